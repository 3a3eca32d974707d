// The Socket.IO 0.9 reference server (npm socket.io@0.9.16), as an oracle for tests.
//
// Try it: node tests/thirdparty/reference_server.js --heartbeat-interval 1 --polling-duration 1
// It prints its port on stdout, serves /socket.io/1/... with a /chat namespace on 127.0.0.1,
// and exits when its stdin closes, so it never outlives the test that started it.
//
// Flags (each optional; when absent the reference's own default applies):
//   --heartbeat-interval S  --heartbeat-timeout S  --close-timeout S  --polling-duration S
//   --transports websocket,xhr-polling,jsonp-polling
//
// /chat events:
//   echo(args..., ack)          acks with its arguments
//   emit({name, args}, ack)     the server emits `name` with `args` to this client, then acks
//   boot()                      the server ends this client's session (socket.disconnect())
// Besides Socket.IO, for tests to look inside: GET /sessions answers the manager's own
// bookkeeping {"handshaken": [ids], "open": {id: URL of its held poll or open websocket}}, and
// GET /settings the settings in force (the reference's defaults unless a flag changed them).

// socket.io 0.9 reads process.EventEmitter, which Node removed (v7).
process.EventEmitter = require('events').EventEmitter;

var http = require('http');
var io = require('socket.io');

var FLAGS = {
  '--heartbeat-interval': 'heartbeat interval',
  '--heartbeat-timeout': 'heartbeat timeout',
  '--close-timeout': 'close timeout',
  '--polling-duration': 'polling duration'
};

function parseOptions(argv) {
  // Off: the Flash policy server listens on the fixed port 10843, and logs are noise.
  var options = { log: false, 'flash policy server': false };
  for (var i = 0; i < argv.length; i += 2) {
    var flag = argv[i], value = argv[i + 1];
    if (value === undefined) throw new Error('missing value for ' + flag);
    if (flag === '--transports') {
      options.transports = value.split(',');
    } else if (FLAGS[flag]) {
      options[FLAGS[flag]] = Number(value);
    } else {
      throw new Error('unknown flag ' + flag);
    }
  }
  return options;
}

var SETTINGS = ['heartbeat interval', 'heartbeat timeout', 'close timeout', 'polling duration',
  'transports', 'origins', 'heartbeats', 'destroy buffer size'];

function sessions() {
  // manager.transports is a function (Manager.prototype.transports) that 0.9 also uses as
  // the map of session id -> current transport.
  var open = {};
  Object.keys(manager.transports).forEach(function (id) {
    var transport = manager.transports[id];
    if (transport && transport.open) open[id] = transport.req.url;
  });
  return { handshaken: Object.keys(manager.handshaken), open: open };
}

function settings() {
  var chosen = {};
  SETTINGS.forEach(function (name) { chosen[name] = manager.get(name); });
  return chosen;
}

var server = http.createServer(function (req, res) {
  var answer = { '/sessions': sessions, '/settings': settings }[req.url];
  res.writeHead(answer ? 200 : 404, { 'Content-Type': 'application/json' });
  res.end(answer ? JSON.stringify(answer()) : '');
});

var manager = io.listen(server, parseOptions(process.argv.slice(2)));

manager.of('/chat').on('connection', function (socket) {
  socket.on('echo', function () {
    var args = Array.prototype.slice.call(arguments);
    var ack = typeof args[args.length - 1] === 'function' ? args.pop() : null;
    if (ack) ack.apply(null, args);
  });
  socket.on('emit', function (request, ack) {
    socket.emit.apply(socket, [request.name].concat(request.args || []));
    if (typeof ack === 'function') ack();
  });
  socket.on('boot', function () {
    // The session's '' socket: disconnecting it ends the session, not just /chat.
    manager.sockets.socket(socket.id).disconnect();
  });
});

server.listen(0, '127.0.0.1', function () {
  process.stdout.write(server.address().port + '\n');
});

process.stdin.on('end', function () { process.exit(0); });
process.stdin.on('close', function () { process.exit(0); });
process.stdin.resume();
