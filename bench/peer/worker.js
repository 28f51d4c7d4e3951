// The seed design's worker, for the benchmark only: a BullMQ worker that, for each image,
// downloads it, compresses it with sharp at JPEG quality 50, stores it in S3 (public-read),
// sets its slot of the product's output URLs and counts it on the batch; the image that
// completes the count ends the batch.
'use strict';

const sharp = require('sharp');
const { Worker } = require('bullmq');
const { PutObjectCommand } = require('@aws-sdk/client-s3');
const { config, mongoose, redisConnection, Batch, Product, s3, QUEUE } = require('./common');

// The image's public URL, or a thrown error saying why there is none.
async function shrinkAndStore({ batch_id, serial_no, index, url }) {
  const res = await fetch(url, { signal: AbortSignal.timeout(30000) });
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  const input = Buffer.from(await res.arrayBuffer());
  const output = await sharp(input).rotate().jpeg({ quality: 50 }).toBuffer();
  const key = `images/${batch_id}/${serial_no}-${index}.jpg`;
  await s3.send(new PutObjectCommand({
    Bucket: config.s3Bucket, Key: key, Body: output, ContentType: 'image/jpeg', ACL: 'public-read',
  }));
  return `${config.s3PublicUrl}/${key}`;
}

async function processImage(job) {
  const { batch_id, product_id, index, url } = job.data;
  let outputUrl = '';
  let error = null;
  try {
    outputUrl = await shrinkAndStore(job.data);
  } catch (e) {
    error = `${url}: ${e.message}`;
  }
  const slot = `output_image_urls.${index}`;
  await Product.updateOne({ _id: product_id },
    error ? { $set: { [slot]: '' }, $push: { image_errors: error } } : { $set: { [slot]: outputUrl } });
  const b = await Batch.findOneAndUpdate({ _id: batch_id },
    { $inc: { [error ? 'images_failed' : 'images_done']: 1 }, $set: { status: 'in progress' } },
    { new: true, lean: true });
  if (b.images_done + b.images_failed === b.images_total) {
    await Batch.updateOne({ _id: batch_id }, { $set: {
      status: b.images_done > 0 ? 'completed' : 'failed',
      message: `${b.images_total} images (${b.images_done} done, ${b.images_failed} failed), ` +
        `${b.rows_total} rows (${b.rows_failed} rejected)`,
    } });
  }
}

mongoose.connect(config.mongodbUri, { dbName: config.dbName }).then(() => {
  const worker = new Worker(QUEUE, processImage, { connection: redisConnection(), concurrency: config.concurrency });
  worker.on('failed', (job, e) => console.error(`job ${job && job.id} failed: ${e.message}`));
  console.log(`peer worker on ${QUEUE}, concurrency ${config.concurrency}`);
  const stop = () => worker.close().then(() => mongoose.disconnect()).then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}, (e) => {
  console.error(e);
  process.exit(69);
});
