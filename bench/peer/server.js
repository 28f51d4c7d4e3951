// The seed design's HTTP side, for the benchmark only: Express with multer takes the CSV,
// stores it in S3, records the batch and its products with mongoose, queues a BullMQ flow
// (one job a product, and the batch's job that runs once they all have) and answers 202;
// GET /status/:id reads the batch back.
'use strict';

const crypto = require('crypto');
const express = require('express');
const multer = require('multer');
const { parse } = require('csv-parse/sync');
const { FlowProducer } = require('bullmq');
const { PutObjectCommand } = require('@aws-sdk/client-s3');
const { config, mongoose, redisConnection, Batch, Product, s3, QUEUE } = require('./common');

const upload = multer({ storage: multer.memoryStorage(), limits: { fileSize: 10 << 20 } });
const flows = new FlowProducer({ connection: redisConnection() });
const RETRY = { attempts: 3, backoff: { type: 'exponential', delay: 1000 } };

// Header names compared without case, spaces or punctuation, as imgpipe's csvsplit does.
const squash = (s) => s.toLowerCase().replace(/[^a-z0-9]/g, '');
const COLUMNS = { serial: ['sno', 'serialnumber', 'serialno'], name: ['productname'], urls: ['inputimageurls'] };

function columnsOf(header) {
  const at = {};
  for (const [key, names] of Object.entries(COLUMNS)) {
    at[key] = header.findIndex((h) => names.includes(squash(h)));
    if (at[key] < 0) throw new Error(`header lacks the ${names[0]} column`);
  }
  return at;
}

function isHttpUrl(s) {
  try {
    const u = new URL(s);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '';
  } catch {
    return false;
  }
}

// The CSV's valid rows as products, and how many rows were rejected.
function productsOf(buf, batchId) {
  const rows = parse(buf, { bom: true, relax_column_count: true, skip_empty_lines: true, trim: true });
  if (rows.length === 0) throw new Error('empty CSV');
  const at = columnsOf(rows[0]);
  const seen = new Set();
  const products = [];
  let failed = 0;
  for (const row of rows.slice(1)) {
    const serial = Number(row[at.serial]);
    // extra fields after a last URL column are further URLs
    const cells = at.urls === rows[0].length - 1 ? row.slice(at.urls) : [row[at.urls] || ''];
    const urls = cells.join(',').split(',').map((u) => u.trim()).filter(Boolean);
    if (!Number.isInteger(serial) || serial <= 0 || seen.has(serial) || !row[at.name] ||
        urls.length === 0 || !urls.every(isHttpUrl)) {
      failed++;
      continue;
    }
    seen.add(serial);
    products.push({
      _id: `${batchId}-${serial}`, serial_no: serial, product_name: row[at.name], batch_id: batchId,
      input_image_urls: urls, output_image_urls: urls.map(() => ''), image_errors: [],
    });
  }
  return { products, rowsTotal: rows.length - 1, rowsFailed: failed };
}

const app = express();

app.post('/upload', upload.single('file'), async (req, res, next) => {
  try {
    if (!req.file) return res.status(400).json({ error: 'no file part' });
    const id = crypto.randomUUID();
    let parsed;
    try {
      parsed = productsOf(req.file.buffer, id);
    } catch (e) {
      return res.status(400).json({ error: e.message });
    }
    const { products, rowsTotal, rowsFailed } = parsed;
    const s3Key = `uploads/${id}.csv`;
    await s3.send(new PutObjectCommand({
      Bucket: config.s3Bucket, Key: s3Key, Body: req.file.buffer, ContentType: 'text/csv',
    }));
    const imagesTotal = products.reduce((n, p) => n + p.input_image_urls.length, 0);
    await Batch.create({
      _id: id, status: products.length ? 'in queue' : 'failed', s3Key,
      message: products.length ? '' : 'no valid rows',
      rows_total: rowsTotal, rows_failed: rowsFailed, images_total: imagesTotal,
    });
    if (products.length) {
      await Product.insertMany(products);
      await flows.add({
        name: 'batch', queueName: QUEUE, data: { batch_id: id }, opts: { ...RETRY, removeOnComplete: true },
        children: products.map((p) => ({
          name: 'product', queueName: QUEUE,
          data: { batch_id: id, product_id: p._id, serial_no: p.serial_no, urls: p.input_image_urls },
          opts: { ...RETRY, removeOnComplete: true, failParentOnFailure: true },
        })),
      });
    }
    res.status(202).json({ batch_id: id, status: 'in queue', status_url: `/status/${id}` });
  } catch (e) {
    next(e);
  }
});

app.get('/status/:id', async (req, res, next) => {
  try {
    const b = await Batch.findById(req.params.id).lean();
    if (!b) return res.status(404).json({ error: 'no such batch' });
    const products = await Product.find({ batch_id: b._id }).sort({ serial_no: 1 }).lean();
    const imagesDone = products.reduce((n, p) => n + p.output_image_urls.filter(Boolean).length, 0);
    const imagesFailed = products.reduce((n, p) => n + p.image_errors.length, 0);
    res.json({
      batch_id: b._id, status: b.status, message: b.message, s3Key: b.s3Key,
      created_at: b.createdAt, updated_at: b.updatedAt,
      progress: {
        rows_total: b.rows_total, rows_done: b.rows_total - b.rows_failed, rows_failed: b.rows_failed,
        images_total: b.images_total, images_done: imagesDone, images_failed: imagesFailed,
      },
      products: products.map((p) => ({
        serial_no: p.serial_no, product_name: p.product_name, input_image_urls: p.input_image_urls,
        output_image_urls: p.output_image_urls, errors: p.image_errors,
      })),
    });
  } catch (e) {
    next(e);
  }
});

app.use((err, req, res, next) => {
  if (err instanceof multer.MulterError) return res.status(err.code === 'LIMIT_FILE_SIZE' ? 413 : 400).json({ error: err.message });
  console.error(err);
  res.status(503).json({ error: err.message });
});

// PEER_RESET_DB=1 starts from an empty database, so that runs do not slow each other:
// FerretDB's cost of a query grows with the collection.
mongoose.connect(config.mongodbUri, { dbName: config.dbName }).then(async () => {
  if (process.env.PEER_RESET_DB === '1') {
    await mongoose.connection.dropDatabase();
    await Product.init();
  }
  app.listen(config.port, '127.0.0.1', () => console.log(`peer server on 127.0.0.1:${config.port}`));
}, (e) => {
  console.error(e);
  process.exit(69);
});
