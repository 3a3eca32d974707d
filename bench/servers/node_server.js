// Peer server for the chatwsgi benchmark: socket.io 4 on Node.
//
// Run (after bench/peers/install.sh):
//   NODE_PATH=bench/peers/node/node_modules node --expose-gc bench/servers/node_server.js --port 8002
//
// Contract (identical to pysio_server.py): binds 127.0.0.1 only, websocket
// transport only, no logging; prints "ready" once listening. Every client of
// the default namespace is in one room: an incoming "chat" event with one
// argument is broadcast as "chat" with that argument to all connected clients,
// sender included. Rooms (bench/steady_storm.py): a "join" event {room}
// puts the client in that room, acked with true; from then on its "chat" goes to
// that room only (sender included). SIGUSR1 runs a full GC then prints "gc-done"; SIGTERM exits 0.
// (The open-files limit cannot be raised from Node: launch it under `ulimit -n`.)
'use strict';

const http = require('http');
const { Server } = require('socket.io');

function parsePort(argv) {
  const i = argv.indexOf('--port');
  const raw = i >= 0 ? argv[i + 1] : undefined;
  const port = Number(raw);
  if (raw === undefined || !Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write('usage: node --expose-gc node_server.js --port PORT\n');
    process.exit(2);
  }
  return port;
}

const port = parsePort(process.argv.slice(2));

if (typeof global.gc !== 'function') {
  process.stderr.write('node_server.js: run node with --expose-gc\n');
  process.exit(2);
}

// Requests outside /socket.io/ fall through to this handler (engine.io keeps
// it as the fallback); without one they would hang forever.
const httpServer = http.createServer((req, res) => {
  res.writeHead(404);
  res.end();
});
const io = new Server(httpServer, {
  transports: ['websocket'],
  serveClient: false,
  cors: { origin: '*' },
});

io.on('connection', (socket) => {
  socket.on('join', (data, ack) => {
    socket.join(data.room);
    socket.data.room = data.room;
    if (typeof ack === 'function') ack(true);
  });
  socket.on('chat', (data) => {
    (socket.data.room ? io.to(socket.data.room) : io).emit('chat', data);
  });
});

process.on('SIGUSR1', () => {
  global.gc();
  process.stdout.write('gc-done\n');
});

process.on('SIGTERM', () => {
  process.exit(0);
});

httpServer.listen(port, '127.0.0.1', () => {
  process.stdout.write('ready\n');
});
