// Driver for the npm Socket.IO 0.9 client (socket.io-client 0.9.16), for tests/support/remote.py.
//
// Commands come on stdin and what the client sees goes to stdout, one JSON object a line
// (the protocol is described in tests/support/remote.py). Try it by hand:
//   echo '{"op":"connect","url":"http://127.0.0.1:8080","namespace":"/chat","transport":"xhr-polling"}' \
//     | node tests/thirdparty/node_client.js
'use strict';

var path = require('path');
var readline = require('readline');
var io = require(path.join(__dirname, 'node_modules', 'socket.io-client'));

var chat = null; // the namespace socket; chat.socket is the connection (io.Socket)

function out(record) {
  process.stdout.write(JSON.stringify(record) + '\n'); // synchronous on a pipe: nothing lost at exit
}

function connect(command) {
  // The `transports` option of io.connect does not force a transport in this build: Socket's
  // constructor merges it index by index into the shared io.transports, which the transport
  // modules' own push() made ['websocket', 'xhr-polling', 'websocket', 'xhr-polling'], and
  // the handshake intersects that with the server's list in the server's order. So
  // {transports: ['xhr-polling']} still connects over websocket; replacing the list forces it.
  io.transports = [command.transport];
  chat = io.connect(command.url + command.namespace, {
    transports: [command.transport],
    'force new connection': true,
  });
  var connection = chat.socket;

  // Every packet as it arrives, whatever its endpoint: listening by event name would miss names
  // we did not expect, 'error' is also the name of the client's own error event, and the
  // server's errors about the connection itself come on the endpoint ''.
  var onPacket = connection.onPacket;
  connection.onPacket = function (packet) {
    if (packet.type === 'event') {
      out({ kind: 'event', name: packet.name, args: packet.args || [], endpoint: packet.endpoint });
    } else if (packet.type === 'error') {
      out({ kind: 'error', message: packet.reason, advice: packet.advice, endpoint: packet.endpoint });
    } else if (packet.type === 'disconnect' && packet.endpoint === command.namespace) {
      out({ kind: 'disconnect', reason: 'namespace disconnected by the server' });
    }
    return onPacket.apply(this, arguments);
  };

  // The namespace's connect packet echoed: once per session, again after a reconnect.
  chat.on('connect', function () {
    out({ kind: 'connected', session: connection.sessionid, transport: connection.transport.name });
  });
  connection.on('disconnect', function (reason) {
    out({ kind: 'disconnect', reason: String(reason) });
  });
  connection.on('reconnecting', function (delay, attempt) {
    out({ kind: 'log', message: 'reconnecting in ' + delay + ' ms (attempt ' + attempt + ')' });
  });
  connection.on('reconnect', function (transport) {
    out({ kind: 'reconnect', transport: transport });
  });
  connection.on('connect_failed', function () {
    out({ kind: 'error', message: 'connect_failed' });
  });
  connection.on('error', function (reason) {
    out({ kind: 'error', message: String(reason && reason.message ? reason.message : reason) });
  });
}

function emit(command) {
  var args = [command.event].concat(command.args || []);
  if (command.ack !== null && command.ack !== undefined) {
    args.push(function () {
      out({ kind: 'ack', ack: command.ack, args: Array.prototype.slice.call(arguments) });
    });
  }
  chat.emit.apply(chat, args);
}

var commands = {
  connect: connect,
  emit: emit,
  // The whole connection, politely: the client sends the disconnect packet and closes.
  disconnect: function () {
    chat.socket.disconnect();
  },
  exit: function () {
    process.exit(0);
  },
};

readline.createInterface({ input: process.stdin }).on('line', function (line) {
  var command;
  try {
    command = JSON.parse(line);
    commands[command.op](command);
  } catch (error) {
    out({ kind: 'error', op: command && command.op, message: String(error && error.stack) });
  }
}).on('close', function () {
  process.exit(0); // the test process went away
});

out({ kind: 'ready', client: 'socket.io-client ' + io.version, node: process.version });
