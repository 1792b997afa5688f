// Cron slots as the Node library computes them, for the differential tests.
//
// Reads {"cases": [{"cron", "timezone", "start", "count"}, ...]} (start an ISO instant) as JSON
// on stdin. Prints one JSON line naming the versions in use, then one line per case:
// {"slots": [iso, ...], "fields": {...}} with `count` successive slots, and "error": message
// when cron-parser throws (at parse time, or at the slot after the ones listed). "fields" is
// what cron-parser parsed the day fields to: dayOfMonth and dayOfWeek as it stores them (their
// lengths decide whether it treats a field as unrestricted) and nthDayOfWeek (k of `n#k`).
//
// Each slot comes from the Node library's own getNextRunAt(repeat, base): a fresh
// cron-parser parseExpression(cron, {currentDate: base, tz}) and one next(), with the
// previous slot as the base, which is how a Node worker advances a cron job.
"use strict";

const fs = require("fs");
const path = require("path");
const { getNextRunAt } = require("mongo-job-scheduler/dist/worker/repeat");

// The cron-parser that the Node library itself resolves.
const libraryDir = path.dirname(require.resolve("mongo-job-scheduler/package.json"));
const cronParserDir = path.dirname(
  require.resolve("cron-parser/package.json", { paths: [libraryDir] }),
);
const cronParser = require(cronParserDir);

function version(dir) {
  return JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")).version;
}

function dayFields(cron) {
  try {
    const parsed = cronParser.parseExpression(cron, { currentDate: new Date(0), tz: "UTC" });
    return {
      dayOfMonth: [...parsed.fields.dayOfMonth],
      dayOfWeek: [...parsed.fields.dayOfWeek],
      nthDayOfWeek: parsed._nthDayOfWeek,
    };
  } catch (err) {
    return null;
  }
}

function slots({ cron, timezone, start, count }) {
  const fields = dayFields(cron);
  const out = [];
  let base = new Date(start);
  try {
    for (let i = 0; i < count; i += 1) {
      base = getNextRunAt({ cron, timezone }, base, "UTC");
      out.push(base.toISOString());
    }
  } catch (err) {
    return { slots: out, fields, error: String(err && err.message ? err.message : err) };
  }
  return { slots: out, fields };
}

const input = JSON.parse(fs.readFileSync(0, "utf8"));
const lines = [
  JSON.stringify({
    "cron-parser": version(cronParserDir),
    luxon: version(path.dirname(require.resolve("luxon/package.json", { paths: [cronParserDir] }))),
    "mongo-job-scheduler": version(libraryDir),
  }),
];
for (const spec of input.cases) lines.push(JSON.stringify(slots(spec)));
process.stdout.write(lines.join("\n") + "\n");
