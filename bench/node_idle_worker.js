// An idle worker process of the Node library mongo-job-scheduler 1.2.4 with default settings
// apart from workers: 4, for the idle-fleet section of bench/run.py. bench/run.py copies this
// file next to the node_modules of its `npm install mongo-job-scheduler@1.2.4 mongodb@6` and
// runs
//   node node_idle_worker.js <mongodb uri> <database> <workers>
// It starts a Scheduler with a no-op handler, prints "ready", and stops when its stdin says
// "stop" or closes (then prints "bye" and exits).
"use strict";

const readline = require("readline");
const { MongoClient } = require("mongodb");
const { Scheduler, MongoJobStore } = require("mongo-job-scheduler");

async function main() {
  const [uri, dbName, workersArg] = process.argv.slice(2);
  const client = new MongoClient(uri);
  await client.connect();
  const scheduler = new Scheduler({
    store: new MongoJobStore(client.db(dbName)),
    handler: async () => {},
    workers: Number(workersArg || 4),
  });
  scheduler.on("worker:error", (err) => console.log(`error ${err}`));
  await scheduler.start();
  console.log("ready");
  const lines = readline.createInterface({ input: process.stdin });
  await new Promise((resolve) => {
    lines.on("line", (line) => {
      if (line.trim() === "stop") resolve();
    });
    lines.on("close", resolve);
  });
  await scheduler.stop({ graceful: true, timeoutMs: 5000 });
  await client.close();
  console.log("bye");
}

// The library's heartbeat sleeps are not cancelled by stop(): exit once stopped.
main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
