// Shared by the interop scripts: argument parsing and JSON with dates.
"use strict";

// Turns the JSON spec sent by the Python tests into JS values: {"$date": iso} is a Date,
// {"$nowPlusMs": n} is the Date n ms after this process's clock reading.
function revive(value) {
  if (Array.isArray(value)) return value.map(revive);
  if (value && typeof value === "object") {
    if (Object.keys(value).length === 1 && typeof value.$date === "string") {
      return new Date(value.$date);
    }
    if (Object.keys(value).length === 1 && typeof value.$nowPlusMs === "number") {
      return new Date(Date.now() + value.$nowPlusMs);
    }
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = revive(v);
    return out;
  }
  return value;
}

function parseArgs() {
  const [uri, dbName, spec] = process.argv.slice(2);
  if (!uri || !dbName) {
    console.error("usage: node <script> <mongodb uri> <database> [json spec]");
    process.exit(64);
  }
  return { uri, dbName, spec: revive(spec ? JSON.parse(spec) : {}) };
}

// One JSON document per line on stdout (ObjectIds become hex strings, Dates ISO strings).
function emit(value) {
  process.stdout.write(JSON.stringify(value) + "\n");
}

module.exports = { emit, parseArgs, revive };
