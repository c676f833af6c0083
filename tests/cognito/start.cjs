#!/usr/bin/env node
// Starts cognito-local (a Cognito-compatible identity provider) on 127.0.0.1
// at a free port, keeping its data under the current directory (.cognito/),
// and prints "listening on 127.0.0.1:<port>" once it serves, the line the
// tests' process helper waits for.
// cognito-local reads these when it is loaded.
process.env.PORT = process.env.PORT ?? "0";
process.env.HOST = process.env.HOST ?? "127.0.0.1";
const path = require("node:path");
const pino = require(path.join(__dirname, "node_modules/pino"));
const { createDefaultServer } = require(path.join(__dirname, "node_modules/cognito-local/lib/server"));
const logger = pino({ level: process.env.DEBUG ? "debug" : "warn" }, process.stderr);
createDefaultServer(logger)
  .then((server) => server.start())
  .then((server) => {
    const { port } = server.address();
    process.stdout.write(`listening on 127.0.0.1:${port}\n`);
  })
  .catch((err) => {
    console.error(err);
    process.exit(1);
  });
