// What the server and the worker share: configuration, the two mongoose models, the
// S3 client and the queue's name.  Reads the environment of `imgpipe stack env`.
'use strict';

const mongoose = require('mongoose');
const { S3Client } = require('@aws-sdk/client-s3');

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (eval "$(bin/imgpipe stack env)")`);
  return v;
}

const config = {
  mongodbUri: need('MONGODB_URI'),
  // its own database on the same server, beside imgpipe's
  dbName: process.env.PEER_DB || 'imgpipe_peer',
  redisUrl: need('REDIS_URL'),
  s3Endpoint: need('S3_ENDPOINT'),
  s3Bucket: process.env.S3_BUCKET || 'imgpipe',
  s3PublicUrl: process.env.S3_PUBLIC_URL || `${need('S3_ENDPOINT')}/${process.env.S3_BUCKET || 'imgpipe'}`,
  region: process.env.AWS_REGION || 'us-east-1',
  port: Number(process.env.PEER_PORT || 3000),
  concurrency: Number(process.env.PEER_CONCURRENCY || require('os').availableParallelism()),
};

// BullMQ wants its ioredis connection options, not a URL; maxRetriesPerRequest must be
// null for a Worker's blocking commands.
function redisConnection() {
  const u = new URL(config.redisUrl);
  return {
    host: u.hostname,
    port: Number(u.port || 6379),
    password: u.password || undefined,
    db: Number(u.pathname.slice(1) || 0),
    maxRetriesPerRequest: null,
  };
}

const batchSchema = new mongoose.Schema({
  _id: String,
  status: { type: String, enum: ['in queue', 'in progress', 'completed', 'failed'] },
  s3Key: String,
  message: { type: String, default: '' },
  rows_total: Number,
  rows_failed: Number,
  images_total: Number,
}, { timestamps: true, versionKey: false });

const productSchema = new mongoose.Schema({
  _id: String,
  serial_no: Number,
  product_name: String,
  batch_id: { type: String, index: true },
  input_image_urls: [String],
  output_image_urls: [String],
  image_errors: [String], // 'errors' in the status JSON; a reserved name in mongoose
}, { timestamps: true, versionKey: false });

const Batch = mongoose.model('Batch', batchSchema, 'batches');
const Product = mongoose.model('Product', productSchema, 'products');

const s3 = new S3Client({ endpoint: config.s3Endpoint, region: config.region, forcePathStyle: true });

module.exports = { config, mongoose, redisConnection, Batch, Product, s3, QUEUE: 'peer-images' };
