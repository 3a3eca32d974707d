/* chatwsgi browser client: plain ES2017, no dependencies besides the Socket.IO 0.9 client. */
(function () {
  'use strict';

  var MAX_TEXT = 2000;
  var TRANSPORTS = ['websocket', 'xhr-polling', 'jsonp-polling'];
  var STATUS_TEXT = {connecting: 'Connecting…', connected: 'Connected',
    reconnecting: 'Reconnecting…', offline: 'Offline',
    ended: 'Disconnected by the server (signed in elsewhere?): reload to reconnect'};

  var $ = function (id) { return document.getElementById(id); };
  var el = {
    status: $('status'), transport: $('transport'), me: $('me'), notices: $('notices'),
    nickForm: $('nick-form'), nickInput: $('nick-input'), nickError: $('nick-error'),
    chat: $('chat'), rooms: $('rooms'), roomForm: $('room-form'), roomInput: $('room-input'),
    roster: $('roster'), rosterCount: $('roster-count'), roomName: $('room-name'),
    messages: $('messages'), typing: $('typing'), composer: $('composer'),
    input: $('message-input'), counter: $('counter')
  };

  var params = new URLSearchParams(location.search);
  var forced = params.get('transport');
  if (forced && TRANSPORTS.indexOf(forced) >= 0) io.transports = [forced];
  var initialRoom = (params.get('room') || '').trim() || 'lobby';

  function load(key) { try { return sessionStorage.getItem(key); } catch (e) { return null; } }
  function save(key, value) { try { sessionStorage.setItem(key, value); } catch (e) { /* ignore */ } }

  var state = {
    nickname: null,        // confirmed nickname
    token: load('chatwsgi.token'),
    room: null,            // current room (confirmed by a join ack)
    lastSeq: {},           // room -> highest seq seen
    epoch: {},             // room -> the history those seqs belong to (new after a server restart)
    pending: {},           // message id -> {id, room, text, ts}
    roster: []
  };
  var savedNick = load('chatwsgi.nickname');
  var assigned = false;           // the server names us (a site that signs its users in)
  var refusal = null;             // why the server refused us the chat (not signed in, say)
  var connected = false;          // namespace connected in this session
  var joinedNow = new Set();      // rooms joined in the current server session
  var held = new Map();           // room -> live messages that came while its history was fetched
  var wantNick = params.get('nick');
  var liById = new Map();         // message id -> <li> for the current room
  var typers = new Map();         // nickname -> timeout id
  var roomCounts = new Map();     // room -> member count (from the last rooms list / announces)
  var lastTypingSent = 0;

  var socket = io.connect('/chat', {
    'reconnect': true, 'reconnection delay': 500, 'reconnection limit': 4000,
    'max reconnection attempts': Infinity, 'connect timeout': 5000,
    // Connect after 'load': jsonp-polling's long-poll <script> tags would otherwise hold
    // the load event open, and the page would look like it never finished loading.
    'auto connect': false
  });
  window.chat = {socket: socket, state: state};

  /* ---------- small helpers ---------- */
  function make(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function charCount(text) { return Array.from(text).length; }
  function pad2(n) { return n < 10 ? '0' + n : String(n); }
  function newId() { return 'm' + Date.now().toString(36) + Math.random().toString(36).slice(2, 10); }
  function emit(name, payload, ack) {  // never buffer into a dead session: callers retry on 'connect'
    if (!connected) return false;
    if (ack) socket.emit(name, payload, ack); else socket.emit(name, payload);
    return true;
  }
  function setStatus(name) {
    el.status.dataset.state = name;
    el.status.textContent = STATUS_TEXT[name];
  }
  function lost() { setStatus(navigator.onLine === false ? 'offline' : 'reconnecting'); }
  function showTransport() {
    var t = socket.socket && socket.socket.transport;
    el.transport.textContent = t ? t.name : '…';
    el.transport.dataset.transport = t ? t.name : '';
  }

  function notice(code, text) {
    var li = make('li', 'notice', text || code);
    li.dataset.code = code || 'info';
    el.notices.appendChild(li);
    while (el.notices.children.length > 5) el.notices.removeChild(el.notices.firstChild);
    setTimeout(function () { if (li.parentNode) li.parentNode.removeChild(li); }, 8000);
  }
  function ackError(res, fallback) {
    notice((res && res.code) || 'error', (res && res.message) || fallback);
  }

  /* ---------- messages ---------- */
  var batching = false;  // appending a page of history: scrolled once, after the whole page
  function nearEnd() {
    var m = el.messages;
    return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
  }
  function append(li, force) {
    var stick = !batching && (force || nearEnd());
    el.messages.appendChild(li);
    if (stick) el.messages.scrollTop = el.messages.scrollHeight;
  }
  function setTime(timeEl, ts) {
    var d = new Date(ts * 1000);
    timeEl.textContent = pad2(d.getHours()) + ':' + pad2(d.getMinutes());
    timeEl.dateTime = d.toISOString();
    timeEl.title = d.toLocaleString();
  }
  function messageItem(msg) {
    var li = make('li', 'message');
    li.dataset.id = msg.id;
    if (msg.seq !== undefined && msg.seq !== null) li.dataset.seq = msg.seq;
    var meta = make('div', 'meta');
    var author = make('span', 'author', msg.author);
    author.dir = 'auto';  // right-to-left names and text lay out on their own terms
    meta.appendChild(author);
    var time = make('time', 'time');
    setTime(time, msg.ts);
    meta.appendChild(time);
    li.appendChild(meta);
    var text = make('span', 'text', msg.text);
    text.dir = 'auto';
    li.appendChild(text);
    if (state.nickname && msg.author === state.nickname) li.classList.add('own');
    liById.set(msg.id, li);
    return li;
  }
  function noteSeq(room, seq) {
    if (typeof seq === 'number' && !(state.lastSeq[room] >= seq)) state.lastSeq[room] = seq;
  }
  function showMessage(msg, force) {
    var li = liById.get(msg.id);
    if (li) {  // already shown (own pending message, or a catch-up overlap)
      li.dataset.seq = msg.seq;
      setTime(li.querySelector('time'), msg.ts);
      if (li.classList.contains('pending')) append(li, true);  // move to its place in seq order
      return;
    }
    append(messageItem(msg), force);
  }
  function showPending(p) {
    var li = messageItem({id: p.id, author: state.nickname, text: p.text, ts: p.ts});
    li.classList.add('own', 'pending');
    append(li, true);
  }
  function announceLine(text) { append(make('li', 'announce', text)); }
  function clearRoomView() {
    el.messages.textContent = '';
    liById.clear();
    older = {};
    typers.forEach(function (t) { clearTimeout(t); });
    typers.clear();
    renderTyping();
  }

  // The outbox: one own message in flight at a time, so messages are stored in the order
  // typed, and a rate-limited one is retried (not dropped) once the server allows it.
  var inFlight = null;
  var retryTimer = null;
  var epoch = 0;  // bumped on every disconnect: acks of an old session are ignored
  function flushOutbox() {
    if (inFlight || retryTimer || !connected) return;
    var next = null;
    // Not while the room's history is being fetched: the live copy of an own message then comes
    // after that history and finds the message still pending (so moves it into place).
    eachPending(function (p) { if (!next && joinedNow.has(p.room) && !held.has(p.room)) next = p; });
    if (!next) return;
    var sentIn = epoch;
    inFlight = next.id;
    var sent = emit('message', {room: next.room, id: next.id, text: next.text}, function (res) {
      if (sentIn !== epoch) return;
      inFlight = null;
      // Not refusals of the message: too fast, or the cluster's store briefly down. The same
      // id goes again later; the server stores it once however often it arrives.
      if (res && (res.code === 'rate_limited' || res.code === 'unavailable')) {
        retryTimer = setTimeout(function () { retryTimer = null; flushOutbox(); }, 1000);
        return;
      }
      if (state.pending[next.id]) {
        var ok = !!(res && res.ok);
        settle(next.id, ok ? 'acked' : 'failed', ok ? res.seq : null);
      }
      flushOutbox();
    });
    if (!sent) inFlight = null;
  }
  function settle(id, cls, seq) {
    delete state.pending[id];
    var li = liById.get(id);
    if (!li) return;
    li.classList.remove('pending');
    li.classList.add(cls);
    if (typeof seq === 'number') li.dataset.seq = seq;
  }
  function sendText(text) {
    if (!state.room || !state.nickname) return;
    var p = {id: newId(), room: state.room, text: text, ts: Date.now() / 1000};
    state.pending[p.id] = p;
    showPending(p);
    flushOutbox();  // sent now, or after the next (re)join
  }
  function eachPending(fn) {
    Object.keys(state.pending).forEach(function (id) { fn(state.pending[id]); });
  }

  /* ---------- rooms, roster, typing ---------- */
  function renderRoster() {
    el.roster.textContent = '';
    state.roster.slice().sort(function (a, b) {
      return a.localeCompare(b, undefined, {sensitivity: 'base'});
    }).forEach(function (nick) { el.roster.appendChild(make('li', nick === state.nickname ? 'me' : '', nick)); });
    el.rosterCount.textContent = String(state.roster.length);
  }

  function renderRooms(list) {
    if (list) {
      roomCounts.clear();
      list.forEach(function (r) { roomCounts.set(r.name, r.count); });
    }
    if (state.room && !roomCounts.has(state.room)) roomCounts.set(state.room, state.roster.length);
    el.rooms.textContent = '';
    Array.from(roomCounts.keys()).sort().forEach(function (name) {
      var li = make('li', name === state.room ? 'active' : '');
      li.dataset.room = name;
      var button = make('button', 'room-button');
      button.type = 'button';
      if (name === state.room) button.setAttribute('aria-current', 'true');
      button.appendChild(make('span', 'name', name));
      button.appendChild(make('span', 'count', roomCounts.get(name)));
      li.appendChild(button);
      el.rooms.appendChild(li);
    });
  }

  var roomsTimer = null, roomsLast = 0;
  function refreshRooms() {  // throttled: at most one 'rooms' request per second
    if (roomsTimer) return;
    var wait = Math.max(0, roomsLast + 1000 - Date.now());
    roomsTimer = setTimeout(function () {
      roomsTimer = null;
      roomsLast = Date.now();
      emit('rooms', {}, function (res) {
        if (res && res.ok && Array.isArray(res.rooms)) renderRooms(res.rooms);
      });
    }, wait);
  }

  function renderTyping() {
    var names = Array.from(typers.keys());
    el.typing.textContent = !names.length ? '' : names.join(', ') + (names.length > 1 ? ' are' : ' is') + ' typing…';
  }
  function stopTyping(nick) {
    if (!typers.has(nick)) return;
    clearTimeout(typers.get(nick));
    typers.delete(nick);
    renderTyping();
  }

  /* ---------- history: joins and catch-ups ---------- */
  // One answer of history (a join's or a catch-up's): a gap line first if history lost some.
  function showHistory(room, res, force) {
    // Measuring the list lays it out: once per page, not once per message (quadratic in a
    // page of hundreds).
    var stick = force || nearEnd();
    if (res.epoch) state.epoch[room] = res.epoch;
    batching = true;
    try {
      if (res.complete === false) {  // history lost messages (or the server restarted)
        state.lastSeq[room] = 0;
        var gapText = 'Some earlier messages are no longer available';
        append(make('li', 'gap', gapText));
        notice('history_incomplete', gapText);
      }
      (Array.isArray(res.messages) ? res.messages : []).forEach(function (msg) {
        showMessage(msg);
        noteSeq(room, msg.seq);
      });
    } finally {
      batching = false;
    }
    if (stick) el.messages.scrollTop = el.messages.scrollHeight;
    updateOlder();  // after a gap line, the history to scroll back through starts anew
  }

  // Fetch the messages of the shown `room` after the last one seen, page by page, while the
  // room's live messages are held; then show those.
  function catchUp(room) {
    var holding = held.get(room);
    var payload = {room: room, after: state.lastSeq[room] || 0, epoch: state.epoch[room]};
    var sent = emit('catch_up', payload, function (res) {
      if (held.get(room) !== holding) return;  // a disconnect or a new join of the room took over
      if (res && res.code === 'rate_limited') {  // a long backlog outran the query limit: go on soon
        setTimeout(function () { if (held.get(room) === holding) catchUp(room); }, 1000);
        return;
      }
      if (!res || !res.ok || room !== state.room) { release(room, false); return; }
      showHistory(room, res, false);
      if (res.more) catchUp(room); else release(room, true);
    });
    if (!sent) release(room, false);
  }

  // Show the messages held for `room`, in seq order. After a failed fetch they are shown as
  // they are: lastSeq stays below the gap, so the next live message, or the rejoin after a
  // reconnect, asks for the missing ones again.
  function release(room, caughtUp) {
    var messages = held.get(room) || [];
    held.delete(room);
    messages.sort(function (a, b) { return a.seq - b.seq; }).forEach(function (msg) {
      if (caughtUp) receive(msg); else if (room === state.room) showMessage(msg);
    });
    flushOutbox();
  }

  /* ---------- earlier messages: loaded when the list is scrolled to its top ---------- */
  var OLDER_PAGE = 50;
  // This view's loader (a new one with each view): `busy` and `stop` are the session a request
  // is out in and the one that refused it; `done` the oldest message once nothing older is stored.
  var older = {};
  var olderLine = make('li', 'older');
  var olderButton = make('button', 'older-button', 'Load earlier messages');
  olderButton.type = 'button';
  olderLine.appendChild(olderButton);

  // The oldest message of the room's current history: the first below the last gap line
  // (above a gap may be another history's messages, their seqs meaningless now).
  function firstShown() {
    var gaps = el.messages.querySelectorAll('li.gap');
    var node = gaps.length ? gaps[gaps.length - 1] : el.messages.firstElementChild;
    while (node && !(node.classList.contains('message') && node.dataset.seq)) node = node.nextElementSibling;
    return node;
  }
  function mayLoadOlder(first) {
    return !!first && Number(first.dataset.seq) > 1 && older.done !== first && older.stop !== epoch;
  }
  function inView(node) {  // or less than 100px above it: loading starts a little early
    var box = el.messages.getBoundingClientRect(), r = node.getBoundingClientRect();
    return r.bottom > box.top - 100 && r.top < box.bottom;
  }
  // The button sits just above the oldest message while older ones may be stored.
  function updateOlder() {
    var first = firstShown();
    if (!mayLoadOlder(first)) {
      if (olderLine.parentNode) olderLine.parentNode.removeChild(olderLine);
      return;
    }
    if (olderLine.nextElementSibling !== first) el.messages.insertBefore(olderLine, first);
    if (inView(olderLine)) loadOlder();
  }
  // One request at a time; its answer is dropped if the view changed (another room, a rejoin)
  // or the session ended meanwhile.
  function loadOlder() {
    var first = firstShown(), room = state.room, view = older, sentIn = epoch;
    if (older.busy === epoch || !mayLoadOlder(first) || !joinedNow.has(room)) return;
    older.busy = epoch;
    var payload = {room: room, before: Number(first.dataset.seq), limit: OLDER_PAGE};
    var sent = emit('history', payload, function (res) {
      if (view !== older || sentIn !== epoch) return;
      if (res && res.code === 'rate_limited') {
        setTimeout(function () {
          if (view === older && sentIn === epoch) { older.busy = null; loadOlder(); }
        }, 1000);
        return;
      }
      older.busy = null;
      if (!res || !res.ok) older.stop = epoch;  // quietly, until the room is joined again
      else if (firstShown() === first) showOlder(first, res);
      updateOlder();
    });
    if (!sent) older.busy = null;
  }
  // Insert a page of older messages above `first`, which stays where it was on screen.
  function showOlder(first, res) {
    var y = first.offsetTop - el.messages.scrollTop;
    var page = document.createDocumentFragment();
    (Array.isArray(res.messages) ? res.messages : []).forEach(function (msg) {
      if (!liById.has(msg.id)) page.appendChild(messageItem(msg));
    });
    el.messages.insertBefore(page, first);
    if (res.complete) {
      older.done = firstShown();
      if (!el.messages.querySelector('li.gap')) {  // else the gap line says it
        el.messages.insertBefore(make('li', 'start', 'Start of the conversation'), el.messages.firstChild);
      }
    }
    el.messages.scrollTop = first.offsetTop - y;
  }
  el.messages.addEventListener('scroll', function () {
    if (olderLine.parentNode && inView(olderLine)) loadOlder();
  }, {passive: true});
  olderButton.addEventListener('click', function () { loadOlder(); });

  // Join `room`; `after` (a number) asks only for newer messages and keeps the list.
  function joinRoom(room, after) {
    var payload = {room: room};
    var fresh = typeof after !== 'number';
    var key = room.trim().toLowerCase();
    if (!fresh) {
      payload.after = after;
      if (state.epoch[key]) payload.epoch = state.epoch[key];
    }
    held.set(key, []);  // messages broadcast before the ack come after its history
    var sent = emit('join', payload, function (res) {
      if (!res || !res.ok) {
        held.delete(key);
        ackError(res, 'Could not join ' + room + '.');
        if (!state.room && key !== 'lobby') joinRoom('lobby');  // e.g. a bad ?room=
        return;
      }
      var name = res.room || room;
      var previous = state.room;
      joinedNow.add(name);
      if (fresh || previous !== name) {
        clearRoomView();
        state.lastSeq[name] = 0;
      }
      state.room = name;
      el.roomName.textContent = name;
      showHistory(name, res, true);
      state.roster = Array.isArray(res.roster) ? res.roster.slice() : [];
      eachPending(function (p) { if (p.room === name && !liById.has(p.id)) showPending(p); });
      renderRoster();
      renderRooms();
      if (previous && previous !== name && joinedNow.has(previous)) {
        joinedNow.delete(previous);
        emit('leave', {room: previous}, function () { refreshRooms(); });
      }
      // The rest of the history, then what was held, then the outbox: pending messages are
      // resent with the same ids (stored once).
      if (res.more) catchUp(name); else release(name, true);
      refreshRooms();
    });
    if (!sent) held.delete(key);
  }

  function switchRoom(raw) {
    var room = String(raw || '').trim();
    if (!room || room === state.room) return;
    if (!connected) { notice('offline', 'Not connected: try again in a moment.'); return; }
    joinRoom(room);
  }

  /* ---------- nickname ---------- */
  function nickError(code, text) {
    el.nickError.textContent = text;
    el.nickError.dataset.code = code;
    if (code !== 'waiting') el.nickInput.setAttribute('aria-invalid', 'true');
  }
  function claimNick(nick, reclaim) {
    var payload = {nickname: nick};
    if (state.token && savedNick && savedNick.toLowerCase() === nick.toLowerCase()) {
      payload.token = state.token;
    }
    emit('nickname', payload, function (res) {
      wantNick = null;
      if (!res || !res.ok) {
        if (res && res.code === 'nickname_fixed') return;  // the server names us: see named()
        if (reclaim) {  // could not take our nickname back: ask again
          state.nickname = null;
          el.chat.hidden = true;
          el.nickForm.hidden = false;
          el.nickInput.value = nick;
        }
        nickError((res && res.code) || 'error', (res && res.message) || 'That nickname was refused.');
        return;
      }
      named(res, reclaim);
    });
  }

  // Our nickname is confirmed (a claim's ack, or the server's 'nickname' event): enter the chat.
  function named(res, reclaim) {
    state.nickname = res.nickname;
    if (res.token) { state.token = res.token; save('chatwsgi.token', res.token); }
    savedNick = res.nickname;
    save('chatwsgi.nickname', res.nickname);
    el.me.textContent = res.nickname;
    el.nickError.textContent = '';
    el.nickInput.removeAttribute('aria-invalid');
    el.nickForm.hidden = true;
    el.chat.hidden = false;
    var room = state.room || initialRoom;
    var after = state.room && typeof state.lastSeq[room] === 'number' ? state.lastSeq[room] : undefined;
    joinRoom(room, after);
    // Own messages pending in rooms we are no longer in cannot be delivered.
    eachPending(function (p) { if (p.room !== room) settle(p.id, 'failed'); });
    if (!reclaim) el.input.focus();
  }
  // A site that signs its users in names them: the server tells the name on each connect, and
  // the page never asks for one (a 'nickname' request would be refused: nickname_fixed).
  socket.on('nickname', function (res) {
    if (!res || typeof res.nickname !== 'string') return;
    assigned = true;
    refusal = null;
    named(res, !!state.nickname);
  });

  function submitNick(raw) {  // client-side check first: trimmed, 1-32 characters
    var nick = String(raw || '').trim();
    var n = charCount(nick);
    if (n < 1) return nickError('bad_nickname', 'Please enter a nickname.');
    if (n > 32) return nickError('bad_nickname', 'A nickname has at most 32 characters.');
    wantNick = nick;
    if (!connected) return nickError('waiting', 'Waiting for the connection…');
    claimNick(nick, false);
  }

  /* ---------- socket events ---------- */
  socket.on('connect', function () {
    connected = true;
    joinedNow.clear();
    setStatus('connected');
    showTransport();
    if (assigned) { /* the server names us: its 'nickname' event follows */ }
    else if (state.nickname) claimNick(state.nickname, true);
    else if (wantNick) submitNick(wantNick);
    refreshRooms();
  });
  socket.on('disconnect', function (reason) {
    connected = false;
    epoch += 1;
    inFlight = null;
    joinedNow.clear();
    // No fetch in flight will be answered now: show what each held.
    Array.from(held.keys()).forEach(function (room) { release(room, false); });
    // 'booted': the server ended this session on purpose (this nickname was reclaimed by
    // another tab or device): the client does not reconnect, so neither do we.
    if (reason === 'booted') setStatus('ended'); else lost();
    if (reason === 'booted' && refusal) el.status.textContent = refusal.message || refusal.code;
  });
  socket.on('reconnecting', lost);
  socket.on('reconnect', function () { setStatus('connected'); showTransport(); });
  socket.on('reconnect_failed', function () { setStatus('offline'); });
  socket.on('connect_failed', function () { setStatus('offline'); });
  window.addEventListener('offline', function () { setStatus('offline'); });
  window.addEventListener('online', function () { if (!connected) setStatus('reconnecting'); });

  function receive(msg) {
    var holding = held.get(msg.room);
    if (holding) { holding.push(msg); return; }  // shown after the history being fetched, in order
    if (!joinedNow.has(msg.room) && msg.room !== state.room) return;
    var last = state.lastSeq[msg.room];
    if (msg.room === state.room && last > 0 && msg.seq > last + 1) {
      // Messages before this one never reached us live (lost between nodes, say): fetch them.
      held.set(msg.room, [msg]);
      catchUp(msg.room);
      return;
    }
    noteSeq(msg.room, msg.seq);
    if (msg.room !== state.room) return;
    stopTyping(msg.author);
    showMessage(msg, msg.author === state.nickname);
  }
  socket.on('message', function (msg) { if (msg && typeof msg === 'object') receive(msg); });

  socket.on('announce', function (a) {
    if (!a || typeof a !== 'object') return;
    if (typeof a.count === 'number') roomCounts.set(a.room, a.count);
    if (a.room === state.room) {
      var roster = state.roster.filter(function (n) {
        return n !== a.nickname && (a.kind !== 'rename' || n !== a.previous);
      });
      var line;
      if (a.kind === 'join') { roster.push(a.nickname); line = a.nickname + ' joined'; }
      else if (a.kind === 'leave') { line = a.nickname + ' left'; stopTyping(a.nickname); }
      else if (a.kind === 'rename') {
        roster.push(a.nickname);
        line = a.previous + ' is now ' + a.nickname;
        stopTyping(a.previous);
      }
      if (line) {
        state.roster = roster;
        announceLine(line);
        renderRoster();
      }
    }
    renderRooms();
    refreshRooms();
  });

  socket.on('typing', function (t) {
    if (!t || t.room !== state.room || !t.nickname || t.nickname === state.nickname) return;
    if (typers.has(t.nickname)) clearTimeout(typers.get(t.nickname));
    typers.set(t.nickname, setTimeout(function () { stopTyping(t.nickname); }, 3000));
    renderTyping();
  });

  function onError(err, serverOnly) {
    if (err && typeof err === 'object' && err.event === 'connect') {  // refused the chat: say why
      refusal = err;
      nickError(err.code || 'error', err.message || err.code);
      el.nickInput.disabled = true;
    }
    if (err && typeof err === 'object' && (err.code || err.message)) {
      notice(err.code || 'error', err.message || err.code);
    } else if (!serverOnly) {
      var last = el.notices.lastElementChild;
      if (last && last.dataset.code === 'transport') return;  // no pile-up while retrying
      notice('transport', typeof err === 'string' && err ? 'Connection problem: ' + err
        : 'Connection problem.');
    }
  }
  function onShutdown(s) {
    notice('shutdown', (s && typeof s.message === 'string' && s.message) || 'Server is restarting…');
  }
  socket.on('error', function (err) { onError(err, false); });
  socket.on('shutdown', onShutdown);
  // Errors about malformed packets come on the default namespace ("").
  var base = socket.socket.of('');
  base.on('error', function (err) { onError(err, true); });
  base.on('shutdown', onShutdown);

  /* ---------- UI events ---------- */
  el.nickForm.addEventListener('submit', function (e) { e.preventDefault(); submitNick(el.nickInput.value); });
  el.nickInput.addEventListener('input', function () {
    el.nickError.textContent = '';
    el.nickInput.removeAttribute('aria-invalid');
  });

  el.rooms.addEventListener('click', function (e) {
    var li = e.target.closest('li[data-room]');
    if (li) switchRoom(li.dataset.room);
  });
  el.roomForm.addEventListener('submit', function (e) {
    e.preventDefault();
    var room = el.roomInput.value.trim();
    if (!room) return;
    el.roomInput.value = '';
    switchRoom(room);
  });

  function updateCounter() {
    var n = charCount(el.input.value);
    el.counter.textContent = n + ' / ' + MAX_TEXT;
    el.counter.classList.toggle('over', n > MAX_TEXT);
    el.input.setAttribute('aria-invalid', n > MAX_TEXT ? 'true' : 'false');
  }
  function submitComposer() {
    var text = el.input.value;
    if (!text.trim()) return;
    sendText(text);
    el.input.value = '';
    updateCounter();
    el.input.focus();
  }
  el.composer.addEventListener('submit', function (e) { e.preventDefault(); submitComposer(); });
  el.input.addEventListener('keydown', function (e) {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      submitComposer();
    }
  });
  el.input.addEventListener('input', function () {
    updateCounter();
    var now = Date.now();
    if (el.input.value.trim() && state.room && joinedNow.has(state.room) &&
        now - lastTypingSent >= 2000) {
      lastTypingSent = now;
      emit('typing', {room: state.room});
    }
  });

  /* ---------- start ---------- */
  function start() { socket.socket.connect(); }
  if (document.readyState === 'complete') start(); else window.addEventListener('load', start);
  setStatus('connecting');
  updateCounter();
  if (wantNick) el.nickInput.value = wantNick;
  else if (savedNick) el.nickInput.value = savedNick;
})();
