// The seed design's worker, for the benchmark only: a BullMQ worker that, for each product,
// downloads each image, compresses it with sharp at JPEG quality 50, stores it in S3
// (public-read) and records the product's output URLs; the batch's job, run by BullMQ
// once all its products' jobs have completed, ends the batch.
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

// A product's images one after another (the worker's concurrency keeps one image a core
// in flight), then the whole product in one update: FerretDB 1.x applies an update as a
// read and a write outside a transaction, so two jobs setting slots of one document, or
// $inc on one counter, lose updates (FerretDB/FerretDB#3040).  Returns the counts the
// batch's job adds up.
async function processProduct({ batch_id, product_id, serial_no, urls }) {
  await Batch.updateOne({ _id: batch_id, status: 'in queue' }, { $set: { status: 'in progress' } });
  const outputs = [];
  const errors = [];
  for (const [index, url] of urls.entries()) {
    try {
      outputs.push(await shrinkAndStore({ batch_id, serial_no, index, url }));
    } catch (e) {
      outputs.push('');
      errors.push(`${url}: ${e.message}`);
    }
  }
  await Product.updateOne({ _id: product_id }, { $set: { output_image_urls: outputs, image_errors: errors } });
  return { done: urls.length - errors.length, failed: errors.length };
}

// Runs once every product's job has completed: ends the batch.
async function finishBatch(job) {
  const counts = Object.values(await job.getChildrenValues());
  const done = counts.reduce((n, c) => n + c.done, 0);
  const failed = counts.reduce((n, c) => n + c.failed, 0);
  const b = await Batch.findById(job.data.batch_id).lean();
  await Batch.updateOne({ _id: b._id }, { $set: {
    status: done > 0 ? 'completed' : 'failed',
    message: `${b.images_total} images (${done} done, ${failed} failed), ` +
      `${b.rows_total} rows (${b.rows_failed} rejected)`,
  } });
}

// A product whose job ran out of attempts (a backend down) fails its batch.
async function onFailed(job, e) {
  console.error(`job ${job && job.id} failed: ${e.message}`);
  if (!job || job.attemptsMade < (job.opts.attempts || 1)) return;
  await Batch.updateOne({ _id: job.data.batch_id }, { $set: { status: 'failed', message: e.message } })
    .catch((err) => console.error(err.message));
}

mongoose.connect(config.mongodbUri, { dbName: config.dbName }).then(() => {
  const worker = new Worker(QUEUE, (job) => (job.name === 'batch' ? finishBatch(job) : processProduct(job.data)),
    { connection: redisConnection(), concurrency: config.concurrency });
  worker.on('failed', onFailed);
  console.log(`peer worker on ${QUEUE}, concurrency ${config.concurrency}`);
  const stop = () => worker.close().then(() => mongoose.disconnect()).then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}, (e) => {
  console.error(e);
  process.exit(69);
});
