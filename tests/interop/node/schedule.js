// Schedules jobs with the Node library mongo-job-scheduler (1.2.4) and prints them.
//   node schedule.js <mongodb uri> <database> '{"ops": [{"schedule": {...}}, {"scheduleBulk": [...]}]}'
// Each op's result (a job, or a list of jobs for scheduleBulk) is printed as one JSON line, in
// order, then {"done": true}. The store's indexes (including Node's unique dedupeKey index)
// are created before anything is scheduled.
"use strict";

const { MongoClient } = require("mongodb");
const { Scheduler, MongoJobStore } = require("mongo-job-scheduler");
const { emit, parseArgs } = require("./common");

async function main() {
  const { uri, dbName, spec } = parseArgs();
  const client = new MongoClient(uri);
  await client.connect();
  try {
    const store = new MongoJobStore(client.db(dbName), {
      collectionName: spec.collection || "scheduler_jobs",
    });
    await store.ensureIndexes();
    const scheduler = new Scheduler({ store });
    for (const op of spec.ops || []) {
      if (op.schedule) emit(await scheduler.schedule(op.schedule));
      else if (op.scheduleBulk) emit(await scheduler.scheduleBulk(op.scheduleBulk));
      else throw new Error("unknown op " + JSON.stringify(op));
    }
    emit({ done: true });
  } finally {
    await client.close();
  }
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : err);
  process.exit(1);
});
