// Bare aedes broker for the benchmark: default options, in-memory persistence,
// a plain TCP server and nothing else (no auth hooks, no logging on the hot path).
//
//   node bench/brokers/aedes-bare.mjs --host 127.0.0.1 --port 1883
import net from 'node:net';
import { Aedes } from 'aedes';

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const host = arg('host', '127.0.0.1');
const port = Number(arg('port', '1883'));

const broker = await Aedes.createBroker();
const server = net.createServer(broker.handle);

server.on('error', (err) => {
  console.error(`aedes-bare: ${err.message}`);
  process.exit(1);
});
server.listen(port, host, () => {
  console.log(JSON.stringify({ msg: 'listening', broker: 'aedes', version: broker.version, host, port }));
});

function shutdown() {
  server.close();
  broker.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
