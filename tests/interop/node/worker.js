// Runs Node workers of mongo-job-scheduler (1.2.4) on a collection and records every execution.
//   node worker.js <mongodb uri> <database> '<json config>'
// Config: workers, pollIntervalMs, lockTimeoutMs (used for the Scheduler and, unless
// storeLockTimeoutMs is given, for the store's lock renewal, which the library configures
// separately: its bug B2), deadlineMs, and `until`: {jobIdHex: n} — stop (gracefully) once
// every listed job has at least n executions in the `executions` collection, whichever fleet
// ran them. SIGTERM also stops it gracefully.
// Handler: inserts {jobId, name, by: "node", owner, data, attempts, priority, nextRunAt,
// lastScheduledAt, at} into `executions`, then sleeps job.data.sleepMs, then throws
// "planned failure <n>" while job.attempts < job.data.failTimes.
// Prints {"ready": true} once started, then {"done": bool, "executions": n, "errors": [...]}
// when it stops; the exit code is 0 if `until` was met, 2 on the deadline.
"use strict";

const { MongoClient, ObjectId } = require("mongodb");
const { Scheduler, MongoJobStore } = require("mongo-job-scheduler");
const { emit, parseArgs } = require("./common");

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  const { uri, dbName, spec } = parseArgs();
  const lockTimeoutMs = spec.lockTimeoutMs || 600000;
  const client = new MongoClient(uri);
  await client.connect();
  const db = client.db(dbName);
  const executions = db.collection("executions");
  let handled = 0;
  const errors = [];

  const scheduler = new Scheduler({
    store: new MongoJobStore(db, {
      collectionName: spec.collection || "scheduler_jobs",
      lockTimeoutMs: spec.storeLockTimeoutMs || lockTimeoutMs,
    }),
    workers: spec.workers || 2,
    pollIntervalMs: spec.pollIntervalMs || 50,
    lockTimeoutMs,
    handler: async (job) => {
      const data = job.data && typeof job.data === "object" ? job.data : {};
      const attempts = job.attempts || 0;
      handled += 1;
      await executions.insertOne({
        jobId: job._id,
        name: job.name,
        by: "node",
        owner: job.lockedBy,
        data: job.data,
        attempts,
        priority: job.priority,
        nextRunAt: job.nextRunAt,
        lastScheduledAt: job.lastScheduledAt,
        at: new Date(),
      });
      if (data.sleepMs) await sleep(data.sleepMs);
      if ((data.failTimes || 0) > attempts) throw new Error(`planned failure ${attempts + 1}`);
    },
  });
  scheduler.on("worker:error", (err) => errors.push(String(err && err.message ? err.message : err)));
  scheduler.on("scheduler:error", (err) => errors.push("scheduler: " + String(err)));

  let stopRequested = false;
  process.on("SIGTERM", () => {
    stopRequested = true;
  });

  const until = Object.entries(spec.until || {}).map(([id, n]) => [new ObjectId(id), n]);
  async function satisfied() {
    if (until.length === 0) return false;
    const counts = new Map();
    const rows = await executions
      .aggregate([
        { $match: { jobId: { $in: until.map(([id]) => id) } } },
        { $group: { _id: "$jobId", n: { $sum: 1 } } },
      ])
      .toArray();
    for (const row of rows) counts.set(row._id.toHexString(), row.n);
    return until.every(([id, n]) => (counts.get(id.toHexString()) || 0) >= n);
  }

  await scheduler.start();
  emit({ ready: true });
  const deadline = Date.now() + (spec.deadlineMs || 30000);
  let done = false;
  while (!stopRequested && Date.now() < deadline) {
    if (await satisfied()) {
      done = true;
      break;
    }
    await sleep(50);
  }
  await scheduler.stop({ graceful: true, timeoutMs: 10000 });
  await client.close();
  // Exit explicitly: the library's graceful stop leaves its timeout timer running (B22).
  process.stdout.write(JSON.stringify({ done, executions: handled, errors }) + "\n", () =>
    process.exit(done || stopRequested ? 0 : 2),
  );
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : err);
  process.exit(1);
});
