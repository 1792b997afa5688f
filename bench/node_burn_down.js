// Burn-down of no-op jobs on the Node library mongo-job-scheduler 1.2.4, the workload of
// bench/run.py's first section. bench/run.py copies this file into a temporary folder where it
// ran `npm install mongo-job-scheduler@1.2.4 mongodb@6`, then runs
//   node node_burn_down.js <mongodb uri> <database> <jobs>
// and reads the JSON line it prints last.
"use strict";

const { MongoClient } = require("mongodb");
const { Scheduler, MongoJobStore } = require("mongo-job-scheduler");

const CHUNK = 1000;
const TIMEOUT_MS = 900000;

async function main() {
  const [uri, dbName, jobsArg] = process.argv.slice(2);
  const total = Number(jobsArg);
  const client = new MongoClient(uri);
  await client.connect();
  const db = client.db(dbName);

  const runs = new Map();
  let handled = 0;
  let finishedAt = 0;
  let resolveDone;
  const done = new Promise((resolve) => {
    resolveDone = resolve;
  });
  const scheduler = new Scheduler({
    store: new MongoJobStore(db, { lockTimeoutMs: 600000 }),
    handler: async (job) => {
      const id = job._id.toHexString();
      runs.set(id, (runs.get(id) || 0) + 1);
      handled += 1;
      if (handled === total) {
        finishedAt = performance.now();
        resolveDone();
      }
    },
    workers: 8,
    pollIntervalMs: 50,
  });
  let errors = 0;
  scheduler.on("worker:error", () => {
    errors += 1;
  });

  for (let first = 0; first < total; first += CHUNK) {
    const size = Math.min(CHUNK, total - first);
    const items = Array.from({ length: size }, (_, k) => ({
      name: "noop",
      data: { i: first + k },
    }));
    await scheduler.scheduleBulk(items);
  }

  const startedAt = performance.now();
  await scheduler.start();
  const timer = setTimeout(() => resolveDone(), TIMEOUT_MS);
  await done;
  clearTimeout(timer);
  const seconds = ((finishedAt || performance.now()) - startedAt) / 1000;
  await scheduler.stop({ graceful: true, timeoutMs: 10000 });
  await client.close();

  let duplicates = 0;
  for (const count of runs.values()) {
    if (count > 1) duplicates += count - 1;
  }
  console.log(
    JSON.stringify({
      jobs: total,
      handled,
      distinct: runs.size,
      duplicates,
      errors,
      seconds,
      rate: handled / seconds,
    }),
  );
}

// The library's heartbeat sleeps (lockTimeoutMs / 2) are not cancelled by stop(), so the
// process would linger for minutes: exit as soon as the figures are printed.
main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
