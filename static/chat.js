/* chatwsgi browser client: plain ES2017, no dependencies besides the Socket.IO 0.9 client.

   A multi-room client: the user stays a member of every room joined (the lobby always) until
   leaving it; the room shown is only a view. Each room keeps its own messages, sequence numbers,
   catch-up and older-history state, roster and unread count, shown or not. */
(function () {
  'use strict';

  var MAX_TEXT = 2000;
  var HOME = 'lobby';          // everyone's home room: always joined, never left
  var MAX_ROOMS = 10;          // the server's limit per member (too_many_rooms)
  var GROUP_SECONDS = 300;     // one author's messages this close share one author/time header
  var LEAVE_GRACE = 3000;      // a leave line waits this long: a rejoin (a reconnect) drops both
  var RETURN_GRACE = 10000;    // after our own reconnect, members we knew coming back are not news
  var MAX_ATTEMPTS = 15;       // reconnection attempts (about a minute) before giving up
  var OLDER_PAGE = 50;
  var ROOM_RE = /^[a-z0-9][a-z0-9_-]{0,31}$/;  // the server's rule, on the folded name
  var TRANSPORTS = ['websocket', 'xhr-polling', 'jsonp-polling'];
  var RETRIED = {rate_limited: true, unavailable: true};  // not refusals: the same request goes again
  var NICK_CODES = ['bad_nickname', 'nickname_taken', 'no_nickname'];
  var STATUS_TEXT = {connecting: 'Connecting…', connected: 'Connected',
    reconnecting: 'Reconnecting…', offline: 'Offline',
    ended: 'Disconnected by the server (signed in elsewhere?): reload to reconnect'};

  var $ = function (id) { return document.getElementById(id); };
  var el = {
    status: $('status'), transport: $('transport'), me: $('me'), notices: $('notices'),
    rename: $('rename'), signOut: $('sign-out'),
    nickForm: $('nick-form'), nickInput: $('nick-input'), nickError: $('nick-error'),
    chat: $('chat'), rooms: $('rooms'), roomForm: $('room-form'), roomInput: $('room-input'),
    roomError: $('room-error'), roster: $('roster'), rosterCount: $('roster-count'),
    rosterState: $('roster-state'), roomName: $('room-name'), messages: $('messages'), jump: $('jump'),
    typing: $('typing'), composer: $('composer'), input: $('message-input'), counter: $('counter'),
    send: $('send'), renameDialog: $('rename-dialog'), renameForm: $('rename-form'),
    renameInput: $('rename-input'), renameError: $('rename-error'), renameCancel: $('rename-cancel')
  };

  function load(key) { try { return sessionStorage.getItem(key); } catch (e) { return null; } }
  function save(key, value) { try { sessionStorage.setItem(key, value); } catch (e) { /* ignore */ } }
  function forget(key) { try { sessionStorage.removeItem(key); } catch (e) { /* ignore */ } }
  function cleanRoom(raw) { return String(raw || '').trim().toLowerCase(); }
  function validRoom(name) { return ROOM_RE.test(name); }
  function savedRooms() {
    try {
      var list = JSON.parse(load('chatwsgi.rooms') || '[]');
      return Array.isArray(list) ? list.filter(validRoom) : [];
    } catch (e) { return []; }
  }

  var params = new URLSearchParams(location.search);
  var forced = params.get('transport');
  if (forced && TRANSPORTS.indexOf(forced) >= 0) io.transports = [forced];
  // ?room= wins (an explicit link); else the room shown before a reload; else the lobby.
  var askedRoom = cleanRoom(params.get('room'));
  var lastRoom = cleanRoom(load('chatwsgi.room'));
  var initialRoom = validRoom(askedRoom) ? askedRoom : validRoom(lastRoom) ? lastRoom : HOME;

  var state = {
    nickname: null,        // confirmed nickname
    token: load('chatwsgi.token'),
    room: null,            // the room shown
    lastSeq: {},           // room -> highest seq seen
    epoch: {},             // room -> the history those seqs belong to (new after a server restart)
    pending: {},           // message id -> {id, room, text, ts}
    roster: []             // the shown room's members
  };
  var savedNick = load('chatwsgi.nickname');
  // A reload claims the nickname again with its token (sign out forgets both); ?nick= asks anew.
  var wantNick = params.get('nick') || (state.token && savedNick) || null;
  var joined = new Set(savedRooms().concat([HOME, initialRoom]));  // rooms we are (to be) a member of
  var live = new Set();           // rooms joined in the current server session
  var views = new Map();          // room -> its view: messages, roster, unread, scroll, loaders
  var target = initialRoom;       // the room to show once joined
  var held = new Map();           // room -> live messages that came while its history was fetched
  var outstanding = new Set();    // ids of requests whose ack has not come yet
  var failed = new Map();         // message id -> own message the server refused
  var roomCounts = new Map();     // room -> member count (from the last rooms list / announces)
  var assigned = false;           // the server names us (a site that signs its users in)
  var refusal = null;             // why the server refused us the chat (not signed in, say)
  var connected = false;          // namespace connected in this session
  var session = 0;                // bumped on every disconnect: answers of an old session are ignored
  var attempts = 0;               // reconnection attempts so far
  var stopped = false;            // the server said it was shutting down
  var gaveUp = false;             // reconnecting has stopped: only a reload helps
  var signingOut = false;
  var lastTypingSent = 0;
  var baseTitle = document.title;

  var socket = io.connect('/chat', {
    'reconnect': true, 'reconnection delay': 500, 'reconnection limit': 4000,
    'max reconnection attempts': MAX_ATTEMPTS, 'connect timeout': 5000,
    // Connect after 'load': jsonp-polling's long-poll <script> tags would otherwise hold
    // the load event open, and the page would look like it never finished loading.
    'auto connect': false
  });
  window.chat = {socket: socket, state: state, heldLeaves: heldLeaves};

  /* ---------- small helpers ---------- */
  function make(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function button(className, text, label) {
    var b = make('button', className, text);
    b.type = 'button';
    if (label) { b.setAttribute('aria-label', label); b.title = label; }
    return b;
  }
  function charCount(text) { return Array.from(text).length; }
  function pad2(n) { return n < 10 ? '0' + n : String(n); }
  function plural(n, word) { return n + ' ' + word + (n === 1 ? '' : 's'); }
  function newId() { return 'm' + Date.now().toString(36) + Math.random().toString(36).slice(2, 10); }

  // Every request carries an id, which the server echoes in the `error` event it sends with a
  // refusal: the refusal is shown once, from the ack, and that duplicate event is dropped.
  var requestNo = 0;
  function request(name, payload, ack) {  // never buffered into a dead session: callers retry on 'connect'
    if (!connected) return false;
    if (!payload.id) payload.id = 'r' + (++requestNo);
    var id = payload.id, sentIn = session;
    outstanding.add(id);
    socket.emit(name, payload, function (res) {
      outstanding.delete(id);
      if (sentIn === session && ack) ack(res && typeof res === 'object' ? res : {});
    });
    return true;
  }

  function setStatus(name, text) {
    el.status.dataset.state = name;
    el.status.textContent = text || STATUS_TEXT[name];
  }
  function showTransport() {
    var t = socket.socket && socket.socket.transport;
    el.transport.textContent = t ? t.name : '…';
    el.transport.dataset.transport = t ? t.name : '';
  }

  /* ---------- notices: one per code, gone when what they say is resolved ---------- */
  function noticeOf(code) {
    return Array.from(el.notices.children).filter(function (li) { return li.dataset.code === code; })[0];
  }
  function notice(code, text, options) {
    options = options || {};
    code = code || 'error';
    var li = noticeOf(code) || newNotice(code);
    li.querySelector('.text').textContent = text || code;
    var old = li.querySelector('.notice-action');
    if (old) old.remove();
    if (options.action) {
      var act = button('ghost-button notice-action', options.action.label);
      act.addEventListener('click', options.action.run);
      li.insertBefore(act, li.querySelector('.dismiss'));
    }
    clearTimeout(li.timer);
    if (!options.sticky) li.timer = setTimeout(function () { li.remove(); }, 8000);
    while (el.notices.children.length > 5) el.notices.firstElementChild.remove();
    return li;
  }
  function newNotice(code) {
    var li = make('li', 'notice');
    li.dataset.code = code;
    li.appendChild(make('span', 'text'));
    li.appendChild(button('dismiss', '×', 'Dismiss'));
    el.notices.appendChild(li);
    return li;
  }
  function resolve(codes) {
    Array.from(el.notices.children).forEach(function (li) {
      if (codes.indexOf(li.dataset.code) >= 0) { clearTimeout(li.timer); li.remove(); }
    });
  }
  function refusedNotice(res, fallback) { notice(res.code || 'error', res.message || fallback); }
  el.notices.addEventListener('click', function (e) {
    var close = e.target.closest('.dismiss');
    if (close) close.closest('li').remove();
  });

  /* ---------- views: each room's messages live in its own list, in the page when shown ---------- */
  function newView(name) {
    return {
      name: name, box: document.createDocumentFragment(), liById: new Map(), older: {},
      floor: null,      // where the current history starts: a gap line, or a message it overlapped
      roster: [], typers: new Map(), leaves: new Map(),
      unread: 0, marker: null, atEnd: true, anchor: null, anchorY: 0,
      known: null       // after a rejoin: {names, until}, the members we knew before it
    };
  }
  function viewOf(name) {
    if (!views.has(name)) views.set(name, newView(name));
    return views.get(name);
  }
  function shownView() { return state.room ? views.get(state.room) || null : null; }
  function isShown(view) { return !!view && view.box === el.messages; }
  function nearEnd() {
    var m = el.messages;
    return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
  }
  function seeing(view) { return isShown(view) && !document.hidden && nearEnd(); }
  function scrollToEnd() { el.messages.scrollTop = el.messages.scrollHeight; }

  function showRoom(name) {
    var current = shownView(), next = name ? viewOf(name) : null;
    if (current === next) return;
    if (current) hideView(current);
    state.room = name;
    if (next) {
      el.messages.appendChild(next.box);  // moves the room's items out of its fragment
      next.box = el.messages;
      restoreScroll(next);
      rememberView(name);
    }
    el.roomName.textContent = name || '';
    renderRoster();
    renderTyping();
    updateOlder();
    checkSeen();
    renderRooms();
  }
  function hideView(view) {
    saveScroll(view);
    olderLine.remove();
    if (!view.unread) dropMarker(view);  // read: the next unread run gets a marker of its own
    var box = document.createDocumentFragment();
    while (el.messages.firstChild) box.appendChild(el.messages.firstChild);
    view.box = box;
  }
  // Where the reader was: at the end, or which item was at the top of the list and where.
  function saveScroll(view) {
    view.atEnd = nearEnd();
    view.anchor = null;
    if (view.atEnd) return;
    var top = el.messages.getBoundingClientRect().top;
    var item = Array.from(el.messages.children).filter(function (li) {  // a message or a line: it stays
      return li.dataset.ts && li.getBoundingClientRect().bottom > top;
    })[0];
    if (item) { view.anchor = item; view.anchorY = item.getBoundingClientRect().top - top; }
  }
  // Back where the reader was (messages may have come meanwhile, above or below); at the end,
  // the first unread message is kept on screen.
  function restoreScroll(view) {
    var top = el.messages.getBoundingClientRect().top;
    if (!view.atEnd && view.anchor && view.anchor.parentNode === el.messages) {
      el.messages.scrollTop += view.anchor.getBoundingClientRect().top - top - view.anchorY;
      return;
    }
    scrollToEnd();
    if (view.unread && view.marker) {
      var y = view.marker.getBoundingClientRect().top - top;
      if (y < 0) el.messages.scrollTop += y - 8;
    }
  }
  // The address and the tab remember the room shown, so a reload comes back to it.
  function rememberView(name) {
    save('chatwsgi.room', name);
    if (params.get('room') === name || (!params.has('room') && name === HOME)) return;
    if (name === HOME) params.delete('room'); else params.set('room', name);
    var query = params.toString();
    history.replaceState(history.state, '', location.pathname + (query ? '?' + query : '') + location.hash);
  }
  function saveRooms() { save('chatwsgi.rooms', JSON.stringify(Array.from(joined))); }

  /* ---------- list items: messages, announcements, dates ---------- */
  var batching = false;  // appending a page of history: scrolled once, after the whole page
  function append(view, li, force) {
    if (!isShown(view)) { view.box.appendChild(li); refreshItem(li); return; }
    var stick = !batching && (force || nearEnd());
    el.messages.appendChild(li);
    refreshItem(li);
    if (stick) scrollToEnd();
  }
  function dayKey(ts) {
    var d = new Date(ts * 1000);
    return d.getFullYear() + '-' + (d.getMonth() + 1) + '-' + d.getDate();
  }
  function setTime(li, ts) {
    var d = new Date(ts * 1000), time = li.querySelector('time');
    li.dataset.ts = ts;
    time.textContent = pad2(d.getHours()) + ':' + pad2(d.getMinutes());
    time.dateTime = d.toISOString();
    li.title = d.toLocaleString(undefined, {weekday: 'long', year: 'numeric', month: 'long',
      day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit'});
  }
  function dayLine(ts) {
    var d = new Date(ts * 1000), li = make('li', 'day'), time = make('time');
    time.textContent = d.toLocaleDateString(undefined, {weekday: 'long', year: 'numeric', month: 'long', day: 'numeric'});
    time.dateTime = d.toISOString().slice(0, 10);
    li.dataset.day = dayKey(ts);
    li.appendChild(time);
    return li;
  }
  // Keep the list readable wherever an item was put: a date line above the first item of each
  // day, and a message grouped under the one just before it when that is by the same author
  // and less than five minutes older (its author and time are then not repeated).
  function refreshItem(item) {
    if (!item || !item.dataset.ts) return;
    var prev = item.previousElementSibling, days = [];
    while (prev && !prev.dataset.ts) {
      if (prev.classList.contains('day')) days.push(prev);
      prev = prev.previousElementSibling;
    }
    var day = dayKey(item.dataset.ts), needed = !prev || dayKey(prev.dataset.ts) !== day;
    days.forEach(function (line, i) { if (!needed || i > 0) line.remove(); });
    if (needed && !days[0]) item.parentNode.insertBefore(dayLine(item.dataset.ts), item);
    else if (needed && days[0].dataset.day !== day) days[0].replaceWith(dayLine(item.dataset.ts));
    item.classList.toggle('grouped', !needed && prev.nextElementSibling === item && grouped(prev, item));
  }
  function grouped(prev, item) {
    var gap = Number(item.dataset.ts) - Number(prev.dataset.ts);
    return prev.classList.contains('message') && item.classList.contains('message') &&
      authorOf(prev) === authorOf(item) && gap >= 0 && gap < GROUP_SECONDS;
  }
  function authorOf(li) { return li.querySelector('.author').textContent; }
  function nextTimed(li) {
    var node = li.nextElementSibling;
    while (node && !node.dataset.ts) node = node.nextElementSibling;
    return node;
  }
  // Take an item out of the list; its date line goes with it if nothing of that day is left.
  function detach(li) {
    var next = nextTimed(li), before = li.previousElementSibling;
    li.remove();
    var after = before && before.nextElementSibling;
    if (before && before.classList.contains('day') && !(after && after.dataset.ts)) before.remove();
    refreshItem(next);
  }
  function headOf(li) {  // the item with its date line, if it has one just above it
    var prev = li.previousElementSibling;
    return prev && prev.classList.contains('day') ? prev : li;
  }

  function messageItem(view, msg) {
    var li = make('li', 'message');
    li.dataset.id = msg.id;
    if (typeof msg.seq === 'number') li.dataset.seq = msg.seq;
    var meta = make('div', 'meta');
    var author = make('span', 'author', msg.author);
    author.dir = 'auto';  // right-to-left names and text lay out on their own terms
    meta.appendChild(author);
    meta.appendChild(make('time', 'time'));
    li.appendChild(meta);
    var text = make('span', 'text', msg.text);
    text.dir = 'auto';
    li.appendChild(text);
    setTime(li, msg.ts);
    if (state.nickname && msg.author === state.nickname) li.classList.add('own');
    view.liById.set(msg.id, li);
    return li;
  }
  function announceLine(view, text, ts) {
    var li = make('li', 'announce');
    li.appendChild(make('span', 'text', text));
    li.appendChild(make('time', 'time'));
    setTime(li, ts || Date.now() / 1000);
    append(view, li);
  }
  function noteSeq(room, seq) {
    if (typeof seq === 'number' && !(state.lastSeq[room] >= seq)) state.lastSeq[room] = seq;
  }
  function showMessage(view, msg, unread) {
    var li = view.liById.get(msg.id);
    if (li) { placeAgain(view, li, msg); return; }
    li = messageItem(view, msg);
    append(view, li, msg.author === state.nickname);
    if (unread && msg.author !== state.nickname) countUnread(view, li);
  }
  // Shown already: an own message sent from here (its live copy moves it to its place in seq
  // order), or a catch-up overlapping what came live.
  function placeAgain(view, li, msg) {
    if (typeof msg.seq === 'number') li.dataset.seq = msg.seq;
    setTime(li, msg.ts);
    if (!li.classList.contains('pending')) { refreshItem(li); return; }
    detach(li);
    append(view, li, true);
  }
  function showPending(view, p) {
    var li = messageItem(view, {id: p.id, author: state.nickname, text: p.text, ts: p.ts});
    li.classList.add('own', 'pending');
    append(view, li, true);
  }

  /* ---------- unread: badges per room, a marker and a jump button, the tab's title ---------- */
  function countUnread(view, li) {
    view.unread += 1;
    if (view.unread === 1) placeMarker(view, li);
    showUnread();
  }
  function placeMarker(view, li) {
    dropMarker(view);
    view.marker = make('li', 'unread-marker', 'New messages');
    li.parentNode.insertBefore(view.marker, li);
    refreshItem(li);  // the marker starts a new group
  }
  function dropMarker(view) {
    if (!view.marker) return;
    var next = view.marker.nextElementSibling;
    view.marker.remove();
    view.marker = null;
    refreshItem(next);
  }
  // The shown room is read once its end is on screen in a visible tab.
  function checkSeen() {
    var view = shownView();
    var end = !view || nearEnd();
    if (view && end && !document.hidden && view.unread) { view.unread = 0; showUnread(); }
    el.jump.hidden = end;
    labelJump(view);
  }
  function labelJump(view) {
    var text = view && view.unread ? plural(view.unread, 'new message') + ' ↓' : 'Jump to latest ↓';
    if (el.jump.textContent !== text) el.jump.textContent = text;
  }
  function showUnread() {
    var total = 0;
    views.forEach(function (view) { total += view.unread; });
    document.title = total ? '(' + total + ') ' + baseTitle : baseTitle;
    labelJump(shownView());
    renderRooms();
  }

  /* ---------- the outbox: own messages, sent one at a time ---------- */
  // One own message in flight at a time, so messages are stored in the order typed, and a
  // rate-limited one is retried (not dropped) once the server allows it.
  var inFlight = null;
  var retryTimer = null;
  function flushOutbox() {
    if (inFlight || retryTimer || !connected) return;
    var next = null;
    // Not while the room's history is being fetched: the live copy of an own message then comes
    // after that history and finds the message still pending (so moves it into place).
    eachPending(function (p) { if (!next && live.has(p.room) && !held.has(p.room)) next = p; });
    if (!next) return;
    inFlight = next.id;
    var sent = request('message', {room: next.room, id: next.id, text: next.text}, function (res) {
      inFlight = null;
      // Too fast, or the cluster's store briefly down: the same id goes again later, and the
      // server stores it once however often it arrives.
      if (RETRIED[res.code]) {
        retryTimer = setTimeout(function () { retryTimer = null; flushOutbox(); }, 1000);
        return;
      }
      if (state.pending[next.id]) settle(next.id, res.ok ? 'acked' : 'failed', res.seq, res);
      flushOutbox();
    });
    if (!sent) inFlight = null;
  }
  function settle(id, cls, seq, res) {
    var p = state.pending[id];
    delete state.pending[id];
    var view = p && views.get(p.room), li = view && view.liById.get(id);
    if (!li) return;
    li.classList.remove('pending');
    li.classList.add(cls);
    if (typeof seq === 'number') li.dataset.seq = seq;
    if (cls === 'failed') showFailed(li, p, res);
  }
  function sendText(text) {
    var view = shownView();
    if (!view || !state.nickname) return;
    var p = {id: newId(), room: view.name, text: text, ts: Date.now() / 1000};
    state.pending[p.id] = p;
    dropMarker(view);  // replying: what came before is read
    showPending(view, p);
    flushOutbox();  // sent now, or after the next (re)join
  }
  function eachPending(fn) {
    Object.keys(state.pending).forEach(function (id) { fn(state.pending[id]); });
  }

  // A message the server refused stays on screen, saying why, with what can be done about it.
  function showFailed(li, p, res) {
    failed.set(p.id, p);
    var bar = make('div', 'actions');
    bar.appendChild(make('span', 'reason', (res && res.message) || 'Not sent.'));
    [['retry', 'Retry'], ['edit', 'Edit'], ['delete', 'Delete']].forEach(function (a) {
      var b = button(a[0], a[1]);
      b.dataset.action = a[0];
      bar.appendChild(b);
    });
    li.appendChild(bar);
  }
  function retry(li, p) {  // the same id: stored once, should the refusal have come after storing it
    li.querySelector('.actions').remove();
    li.classList.remove('failed');
    li.classList.add('pending');
    state.pending[p.id] = p;
    flushOutbox();
  }
  function editFailed(li, p) {
    var draft = el.input.value;
    el.input.value = draft.trim() ? p.text + '\n' + draft : p.text;  // never loses a draft
    forgetFailed(li, p);
    updateComposer();
  }
  function forgetFailed(li, p) {
    var view = views.get(p.room);
    if (view) view.liById.delete(p.id);
    detach(li);
    el.input.focus();
  }
  el.messages.addEventListener('click', function (e) {
    var action = e.target.closest('.actions button');
    var li = action && action.closest('li.message');
    var p = li && failed.get(li.dataset.id);
    if (!p) return;
    failed.delete(p.id);
    if (action.dataset.action === 'retry') retry(li, p);
    else if (action.dataset.action === 'edit') editFailed(li, p);
    else forgetFailed(li, p);
  });

  /* ---------- rooms list, roster, typing ---------- */
  function renderRoster() {
    var view = shownView(), names = view ? view.roster : [];
    state.roster = names;
    el.roster.textContent = '';
    names.slice().sort(function (a, b) {
      return a.localeCompare(b, undefined, {sensitivity: 'base'});
    }).forEach(function (nick) { el.roster.appendChild(make('li', nick === state.nickname ? 'me' : '', nick)); });
    el.rosterCount.textContent = String(names.length);
    // Offline, the list is what we last knew, not who is online now.
    var stale = !!view && !live.has(view.name);
    el.roster.classList.toggle('offline', stale);
    el.rosterState.hidden = !stale;
    el.rosterState.textContent = connected ? 'Rejoining: last known members' : 'Offline: last known members';
  }

  var roomItems = new Map();  // room -> its <li>, kept (not rebuilt) so focus stays on its buttons
  function renderRooms(list) {
    if (list) {
      roomCounts.clear();
      list.forEach(function (r) { roomCounts.set(r.name, r.count); });
    }
    var names = roomNames();
    names.forEach(function (name, i) {
      var li = roomItem(name);
      if (el.rooms.children[i] !== li) el.rooms.insertBefore(li, el.rooms.children[i] || null);
    });
    while (el.rooms.children.length > names.length) {
      roomItems.delete(el.rooms.lastElementChild.dataset.room);
      el.rooms.lastElementChild.remove();
    }
  }
  // Joined rooms first (whether or not the server's list has them), then the others with members.
  function roomNames() {
    var mine = Array.from(joined).filter(function (name) { return views.has(name) || held.has(name); });
    var others = Array.from(roomCounts.keys()).filter(function (name) { return !joined.has(name); });
    return mine.sort().concat(others.sort());
  }
  function roomItem(name) {
    var li = roomItems.get(name) || newRoomItem(name);
    var view = views.get(name), shown = name === state.room, member = joined.has(name);
    var count = view && live.has(name) ? view.roster.length : roomCounts.get(name);
    var unread = view && !shown ? view.unread : 0;
    li.className = [shown ? 'active' : '', member ? 'joined' : '', unread ? 'has-unread' : ''].join(' ').trim();
    var open = li.querySelector('.room-button');
    if (shown) open.setAttribute('aria-current', 'true'); else open.removeAttribute('aria-current');
    open.setAttribute('aria-label', name + (unread ? ', ' + unread + ' unread' : '') +
      (count === undefined ? '' : ', ' + plural(count, 'member')));
    li.querySelector('.unread').textContent = unread ? String(unread) : '';
    li.querySelector('.unread').hidden = !unread;
    li.querySelector('.count').textContent = count === undefined ? '' : String(count);
    li.querySelector('.leave-button').hidden = !member || name === HOME;
    return li;
  }
  function newRoomItem(name) {
    var li = make('li');
    li.dataset.room = name;
    var open = button('room-button');
    open.appendChild(make('span', 'name', name));
    open.appendChild(make('span', 'unread'));
    open.appendChild(make('span', 'count'));
    li.appendChild(open);
    li.appendChild(button('leave-button', '×', 'Leave #' + name));
    roomItems.set(name, li);
    return li;
  }

  var roomsTimer = null, roomsLast = 0;
  function refreshRooms() {  // throttled: at most one 'rooms' request per second
    if (roomsTimer) return;
    var wait = Math.max(0, roomsLast + 1000 - Date.now());
    roomsTimer = setTimeout(function () {
      roomsTimer = null;
      roomsLast = Date.now();
      request('rooms', {}, function (res) {
        if (res.ok && Array.isArray(res.rooms)) renderRooms(res.rooms);
      });
    }, wait);
  }

  function renderTyping() {
    var view = shownView(), names = view ? Array.from(view.typers.keys()) : [];
    el.typing.textContent = !names.length ? '' : names.join(', ') + (names.length > 1 ? ' are' : ' is') + ' typing…';
  }
  function stopTyping(view, nick) {
    if (!view.typers.has(nick)) return;
    clearTimeout(view.typers.get(nick));
    view.typers.delete(nick);
    if (isShown(view)) renderTyping();
  }

  /* ---------- history: joins and catch-ups ---------- */
  // One answer of history (a join's or a catch-up's) into the room's view. Measuring the list
  // lays it out: once per page, not once per message (quadratic in a page of hundreds).
  function showHistory(view, res, fresh) {
    var room = view.name, shown = isShown(view);
    var stick = shown && (fresh || nearEnd());
    var unread = !fresh && !seeing(view);  // a rejoin's or catch-up's news; a fresh join's history is not
    var messages = Array.isArray(res.messages) ? res.messages : [];
    if (res.epoch) state.epoch[room] = res.epoch;
    batching = true;
    try {
      if (res.complete === false) newHistory(view, messages);
      messages.forEach(function (msg) {
        showMessage(view, msg, unread);
        noteSeq(room, msg.seq);
      });
    } finally {
      batching = false;
    }
    if (stick) scrollToEnd();
    if (shown) { updateOlder(); checkSeen(); }  // after a gap line, the history to scroll back through starts anew
  }
  // `complete: false`: history lost messages after our last one, or began anew (a server that
  // kept it in memory restarted). Only if the answer does not overlap what is shown can
  // something be missing: then a gap line says so.
  function newHistory(view, messages) {
    state.lastSeq[view.name] = 0;  // the answer's sequence numbers count from now on
    var overlap = messages.map(function (msg) {
      var li = view.liById.get(msg.id);
      return li && !li.classList.contains('pending') && authorOf(li) === msg.author ? li : null;
    }).filter(Boolean)[0];
    if (overlap) { view.floor = overlap; return; }
    var gap = make('li', 'gap', 'Some earlier messages are no longer available');
    append(view, gap);
    view.floor = gap;
  }

  // Fetch the messages of `room` after the last one seen, page by page, while the room's live
  // messages are held; then show those.
  function catchUp(room) {
    var holding = held.get(room);
    var payload = {room: room, after: state.lastSeq[room] || 0, epoch: state.epoch[room]};
    var sent = request('catch_up', payload, function (res) {
      if (held.get(room) !== holding) return;  // a disconnect or a new join of the room took over
      if (res.code === 'rate_limited') {  // a long backlog outran the query limit: go on soon
        setTimeout(function () { if (held.get(room) === holding) catchUp(room); }, 1000);
        return;
      }
      var view = views.get(room);
      if (!res.ok) refusedNotice(res, 'Could not fetch the messages missed in #' + room + '.');
      if (!res.ok || !view) { release(room, false); return; }
      showHistory(view, res, false);
      if (res.more) catchUp(room); else release(room, true);
    });
    if (!sent) release(room, false);
  }

  // Show the messages held for `room`, in seq order. After a failed fetch they are shown as
  // they are: lastSeq stays below the gap, so the next live message, or the rejoin after a
  // reconnect, asks for the missing ones again.
  function release(room, caughtUp) {
    var messages = held.get(room) || [], view = views.get(room);
    held.delete(room);
    messages.sort(function (a, b) { return a.seq - b.seq; }).forEach(function (msg) {
      if (caughtUp) receive(msg); else if (view) showMessage(view, msg, !seeing(view));
    });
    flushOutbox();
  }

  /* ---------- earlier messages: loaded when the list is scrolled to its top ---------- */
  // Each view has its loader (a new one when the room is joined anew): `busy` and `stop` are the
  // session a request is out in and the one that refused it; `done` the oldest message once
  // nothing older is stored.
  var olderLine = make('li', 'older');
  var olderButton = button('older-button', 'Load earlier messages');
  olderLine.appendChild(olderButton);

  // The oldest message of the room's current history: the first from where it starts (above
  // may be another history's messages, their seqs meaningless now).
  function firstShown(view) {
    var node = view.floor || view.box.firstElementChild;
    while (node && !(node.classList.contains('message') && node.dataset.seq)) node = node.nextElementSibling;
    return node;
  }
  function mayLoadOlder(view, first) {
    return !!first && Number(first.dataset.seq) > 1 && view.older.done !== first && view.older.stop !== session;
  }
  function inView(node) {  // or less than 100px above it: loading starts a little early
    var box = el.messages.getBoundingClientRect(), r = node.getBoundingClientRect();
    return r.bottom > box.top - 100 && r.top < box.bottom;
  }
  // The button sits just above the oldest message while older ones may be stored.
  function updateOlder() {
    var view = shownView(), first = view && firstShown(view);
    if (!view || !mayLoadOlder(view, first)) { olderLine.remove(); return; }
    var head = headOf(first);
    if (olderLine.nextElementSibling !== head) el.messages.insertBefore(olderLine, head);
    if (inView(olderLine)) loadOlder();
  }
  // One request at a time per view; its answer is dropped if the room was left or joined anew,
  // or the session ended meanwhile.
  function loadOlder() {
    var view = shownView(), first = view && firstShown(view);
    if (!view || view.older.busy === session || !mayLoadOlder(view, first) || !live.has(view.name)) return;
    var loader = view.older, sentIn = session;
    loader.busy = session;
    var payload = {room: view.name, before: Number(first.dataset.seq), limit: OLDER_PAGE};
    var sent = request('history', payload, function (res) {
      if (view.older !== loader) return;
      if (res.code === 'rate_limited') {
        setTimeout(function () {
          if (view.older === loader && sentIn === session) { loader.busy = null; loadOlder(); }
        }, 1000);
        return;
      }
      loader.busy = null;
      if (!res.ok) { loader.stop = session; refusedNotice(res, 'Could not load earlier messages.'); }
      else if (firstShown(view) === first) showOlder(view, first, res);
      if (isShown(view)) updateOlder();
    });
    if (!sent) loader.busy = null;
  }
  // Insert a page of older messages above `first`, which stays where it was on screen.
  function showOlder(view, first, res) {
    var shown = isShown(view), y = first.getBoundingClientRect().top;
    var page = document.createDocumentFragment();
    (Array.isArray(res.messages) ? res.messages : []).forEach(function (msg) {
      if (view.liById.has(msg.id)) return;
      var li = messageItem(view, msg);
      page.appendChild(li);
      refreshItem(li);
    });
    view.box.insertBefore(page, headOf(first));
    refreshItem(first);
    if (res.complete) {
      view.older.done = firstShown(view);
      if (!(view.floor && view.floor.classList.contains('gap'))) {  // else the gap line says it
        view.box.insertBefore(make('li', 'start', 'Start of the conversation'), view.box.firstChild);
      }
    }
    if (shown) el.messages.scrollTop += first.getBoundingClientRect().top - y;
  }
  el.messages.addEventListener('scroll', function () {
    if (olderLine.parentNode && inView(olderLine)) loadOlder();
    checkSeen();
  }, {passive: true});
  olderButton.addEventListener('click', function () { loadOlder(); });

  /* ---------- joining and leaving rooms ---------- */
  // Join `room`; `after` (a number) asks only for newer messages and keeps its view.
  // `done(refusal)` is called once: with null when joined, with the ack when refused.
  function joinRoom(room, after, done) {
    var payload = {room: room}, fresh = typeof after !== 'number';
    if (!fresh) {
      payload.after = after;
      if (state.epoch[room]) payload.epoch = state.epoch[room];
    }
    held.set(room, []);  // messages broadcast before the ack come after its history
    var sent = request('join', payload, function (res) {
      if (!res.ok) { held.delete(room); joinRefused(room, after, res, done); return; }
      joinedRoom(room, res, fresh);
      if (done) done(null);
    });
    if (!sent) held.delete(room);
    return sent;
  }
  function joinRefused(room, after, res, done) {
    if (RETRIED[res.code] && joined.has(room)) {  // a rejoin: the room is ours, try again shortly
      setTimeout(function () {
        if (connected && joined.has(room) && !live.has(room) && !held.has(room)) joinRoom(room, after, done);
      }, 1000);
      return;
    }
    if (target === room) target = state.room || HOME;
    if (!state.room && live.has(target)) showRoom(target);
    if (done) done(res);
  }
  function joinedRoom(room, res, fresh) {
    var name = res.room || room, view = viewOf(name);
    live.add(name);
    joined.add(name);
    saveRooms();
    if (fresh) resetView(view);
    takeRoster(view, res.roster, fresh);
    resolve(['unavailable']);  // the store answers again
    showHistory(view, res, fresh);
    eachPending(function (p) { if (p.room === name && !view.liById.has(p.id)) showPending(view, p); });
    if (name === target && state.room !== name) showRoom(name);
    if (name === state.room) renderRoster();
    // The rest of the history, then what was held, then the outbox: pending messages are
    // resent with the same ids (stored once).
    if (res.more) catchUp(name); else release(name, true);
    renderRooms();
    refreshRooms();
  }
  // A rejoin's roster replaces the one we knew, which says who is not news coming back, and
  // settles the leave lines held meanwhile.
  function takeRoster(view, roster, fresh) {
    if (!fresh) view.known = {names: new Set(view.roster), until: Date.now() + RETURN_GRACE};
    view.roster = Array.isArray(roster) ? roster.slice() : [];
    settleLeaves(view);
  }
  function resetView(view) {
    var shown = isShown(view);
    if (shown) { el.messages.textContent = ''; } else { view.box = document.createDocumentFragment(); }
    view.liById.clear();
    view.older = {};
    view.floor = null;
    view.marker = null;
    view.unread = 0;
    state.lastSeq[view.name] = 0;
    if (shown) updateOlder();
  }

  // Rejoin every room we are a member of (after a reconnect, or on entering): the one to show first.
  function enterRooms() {
    var rooms = Array.from(joined).sort(function (a, b) { return (b === target) - (a === target); });
    rooms.forEach(function (room) {
      if (live.has(room) || held.has(room)) return;
      var after = typeof state.lastSeq[room] === 'number' ? state.lastSeq[room] : undefined;
      joinRoom(room, after, function (res) { if (res) lostRoom(room, res); });
    });
  }
  function lostRoom(room, res) {
    notice(res.code || 'error', 'Could not rejoin #' + room + ': ' + (res.message || res.code));
    if (room !== HOME) forgetRoom(room);
  }

  // Show `name`, joining it first unless we are a member. `fromForm`: refusals go under the field.
  function openRoom(name, fromForm) {
    var problem = !connected ? 'Not connected: try again in a moment.' :
      joined.size >= MAX_ROOMS ? 'You are in ' + MAX_ROOMS + ' rooms: leave one to join another.' : '';
    if (joined.has(name)) {
      target = name;
      if (views.has(name)) showRoom(name);
      if (fromForm) roomAccepted(name);
      return;
    }
    if (problem) { roomRefused({code: connected ? 'too_many_rooms' : 'offline', message: problem}, fromForm); return; }
    target = name;
    joinRoom(name, undefined, function (res) {
      if (res) roomRefused(res, fromForm);
      else if (fromForm) roomAccepted(name);
    });
  }
  function roomAccepted(name) {
    if (cleanRoom(el.roomInput.value) === name) el.roomInput.value = '';
    roomError('', '');
  }
  function roomRefused(res, fromForm) {
    var text = res.message || 'Could not join that room.';
    if (fromForm) roomError(res.code || 'error', text); else notice(res.code || 'error', text);
  }
  function roomError(code, text) {
    el.roomError.textContent = text;
    el.roomError.dataset.code = code;
    if (text) el.roomInput.setAttribute('aria-invalid', 'true'); else el.roomInput.removeAttribute('aria-invalid');
  }
  function roomProblem(name) {
    if (!name) return 'Type the name of a room.';
    if (charCount(name) > 32) return 'A room name has at most 32 characters.';
    if (!validRoom(name)) return 'Use only a–z, 0–9, - and _, starting with a letter or digit.';
    return '';
  }

  function leaveRoom(name) {
    if (name === HOME || !joined.has(name)) return;
    if (!connected) { forgetRoom(name); return; }  // the server ended our memberships with the session
    if (!live.has(name)) { notice('busy', 'Still rejoining #' + name + ': try again in a moment.'); return; }
    request('leave', {room: name}, function (res) {
      if (!res.ok && res.code !== 'not_in_room') { refusedNotice(res, 'Could not leave #' + name + '.'); return; }
      forgetRoom(name);
    });
  }
  function forgetRoom(name) {
    joined.delete(name);
    live.delete(name);
    held.delete(name);
    saveRooms();
    eachPending(function (p) { if (p.room === name) delete state.pending[p.id]; });
    if (target === name) target = HOME;
    if (state.room === name) showRoom(views.has(HOME) ? HOME : null);
    var view = views.get(name);
    if (view) {
      view.leaves.forEach(function (leave) { clearTimeout(leave.timer); });
      view.typers.forEach(clearTimeout);
      views.delete(name);
    }
    delete state.lastSeq[name];
    delete state.epoch[name];
    showUnread();
    refreshRooms();
  }

  /* ---------- nickname, rename, sign out ---------- */
  function nickError(code, text) {
    el.nickError.textContent = text;
    el.nickError.dataset.code = code;
    if (code !== 'waiting') el.nickInput.setAttribute('aria-invalid', 'true');
  }
  function nickProblem(nick) {
    var n = charCount(nick);
    if (n < 1) return 'Please enter a nickname.';
    if (n > 32) return 'A nickname has at most 32 characters.';
    return '';
  }
  function nickPayload(nick) {  // our token reclaims our own nickname (after a reconnect or reload)
    var payload = {nickname: nick};
    if (state.token && savedNick && savedNick.toLowerCase() === nick.toLowerCase()) payload.token = state.token;
    return payload;
  }
  function claimNick(nick, reclaim) {
    request('nickname', nickPayload(nick), function (res) {
      wantNick = null;
      if (!res.ok) {
        if (res.code === 'nickname_fixed') return;  // the server names us: see named()
        if (reclaim) showNickForm(nick);
        nickError(res.code || 'error', res.message || 'That nickname was refused.');
        return;
      }
      named(res);
      enter(reclaim);
    });
  }
  function showNickForm(nick) {  // could not take our nickname (back): ask again
    state.nickname = null;
    el.chat.hidden = true;
    el.nickForm.hidden = false;
    el.nickInput.value = nick;
  }

  // Our nickname is confirmed (a claim's or rename's ack, or the server's 'nickname' event).
  function named(res) {
    state.nickname = res.nickname;
    if (res.token) { state.token = res.token; save('chatwsgi.token', res.token); }
    savedNick = res.nickname;
    save('chatwsgi.nickname', res.nickname);
    el.me.textContent = res.nickname;
    el.nickError.textContent = '';
    el.nickInput.removeAttribute('aria-invalid');
    resolve(NICK_CODES);
    el.nickForm.hidden = true;
    el.chat.hidden = false;
    el.rename.hidden = assigned;  // a site that signs its users in names them, and signs them out
    el.signOut.hidden = assigned;
    renderRoster();
  }
  // In the chat: (re)join every room we are a member of.
  function enter(reclaim) {
    enterRooms();
    if (!reclaim) el.input.focus();
  }
  // A site that signs its users in names them: the server tells the name on each connect, and
  // the page never asks for one (a 'nickname' request would be refused: nickname_fixed).
  socket.on('nickname', function (res) {
    if (!res || typeof res.nickname !== 'string') return;
    var reclaim = !!state.nickname;
    assigned = true;
    refusal = null;
    named(res);
    enter(reclaim);
  });

  function submitNick(raw) {  // client-side check first: trimmed, 1-32 characters
    var nick = String(raw || '').trim(), problem = nickProblem(nick);
    if (problem) return nickError('bad_nickname', problem);
    wantNick = nick;
    if (!connected) return nickError('waiting', 'Waiting for the connection…');
    claimNick(nick, false);
  }

  // A rename is the `nickname` request again; everyone in our rooms sees "A is now B".
  function rename(raw) {
    var nick = String(raw || '').trim(), problem = nickProblem(nick);
    if (problem) return renameError(problem);
    if (nick === state.nickname) { el.renameDialog.close(); return; }
    if (!connected) return renameError('Not connected: try again in a moment.');
    request('nickname', nickPayload(nick), function (res) {
      if (!res.ok) return renameError(res.message || 'That nickname was refused.');
      named(res);
      el.renameDialog.close();
    });
  }
  function renameError(text) {
    el.renameError.textContent = text;
    if (text) el.renameInput.setAttribute('aria-invalid', 'true'); else el.renameInput.removeAttribute('aria-invalid');
  }
  function openRename() {
    renameError('');
    el.renameInput.value = state.nickname || '';
    el.renameDialog.showModal();
    el.renameInput.select();
  }

  // Signing out ends the session at once, on any transport (the client's synchronous
  // `?disconnect` request), so the nickname is free and others see us go; then the page
  // starts afresh at the nickname form, remembering nothing.
  function signOut() {
    ['chatwsgi.nickname', 'chatwsgi.token', 'chatwsgi.rooms', 'chatwsgi.room'].forEach(forget);
    signingOut = true;
    setStatus('ended', 'Signing out…');
    try { if (socket.socket.connected) socket.socket.disconnectSync(); } catch (e) { /* reloading anyway */ }
    params.delete('nick');
    params.delete('room');
    var query = params.toString();
    location.replace(location.pathname + (query ? '?' + query : ''));
  }

  /* ---------- connection state ---------- */
  socket.on('connect', function () {
    connected = true;
    attempts = 0;
    stopped = false;
    gaveUp = false;
    live.clear();
    setStatus('connected');
    showTransport();
    resolve(['transport', 'offline', 'shutdown', 'reconnect_failed', 'busy']);
    if (assigned) { /* the server names us: its 'nickname' event follows */ }
    else if (state.nickname) claimNick(state.nickname, true);
    else if (wantNick) submitNick(wantNick);
    refreshRooms();
  });
  socket.on('disconnect', function (reason) {
    connected = false;
    session += 1;
    inFlight = null;
    live.clear();
    outstanding.clear();
    // No fetch in flight will be answered now: show what each held.
    Array.from(held.keys()).forEach(function (room) { release(room, false); });
    views.forEach(function (view) { view.typers.forEach(clearTimeout); view.typers.clear(); });
    renderTyping();
    renderRoster();
    renderRooms();
    if (signingOut) return;
    // 'booted': the server ended this session on purpose (this nickname was reclaimed by
    // another tab or device): the client does not reconnect, so neither do we.
    if (reason === 'booted') setStatus('ended', refusal && (refusal.message || refusal.code));
    else lost();
  });
  function lost() {
    if (connected || gaveUp) return;
    if (navigator.onLine === false) { setStatus('offline'); return; }
    var tries = attempts ? ' (attempt ' + attempts + ')' : '';
    setStatus('reconnecting', 'Reconnecting' + tries + '…');
    // A stopped server is said so, with the attempts: never "restarting", never silently forever.
    if (stopped) notice('shutdown', 'The server stopped; trying to reconnect' + tries + '…', {sticky: true});
  }
  socket.on('reconnecting', function (delay, attempt) {
    attempts = attempt || attempts + 1;
    lost();
    watchGiveUp(delay);
  });
  // After its last attempt the 0.9 client tries every transport once more, and when that
  // handshake fails (a server that is down) it stops without emitting `reconnect_failed`: so
  // past the last attempt, no connection by the time that try would have ended means it gave up.
  var giveUpTimer = null;
  function watchGiveUp(delay) {
    var options = socket.socket.options;
    clearTimeout(giveUpTimer);
    if (attempts < options['max reconnection attempts']) return;
    giveUpTimer = setTimeout(giveUp, (delay || 0) + options['connect timeout'] + 1000);
  }
  function giveUp() {
    if (connected || gaveUp) return;
    gaveUp = true;
    setStatus('offline', 'Could not reconnect');
    resolve(['shutdown', 'transport']);
    notice('reconnect_failed', 'Could not reconnect. Reload to try again.',
      {sticky: true, action: {label: 'Reload', run: function () { location.reload(); }}});
  }
  socket.on('reconnect', function () { setStatus('connected'); showTransport(); });
  socket.on('reconnect_failed', giveUp);
  socket.on('connect_failed', function () { setStatus('offline'); });
  window.addEventListener('offline', function () { if (!connected) setStatus('offline'); });
  window.addEventListener('online', function () { if (!connected && !gaveUp) setStatus('reconnecting'); });

  /* ---------- server events ---------- */
  function receive(msg) {
    var holding = held.get(msg.room);
    if (holding) { holding.push(msg); return; }  // shown after the history being fetched, in order
    var view = views.get(msg.room);
    if (!view || !live.has(msg.room)) return;
    var last = state.lastSeq[msg.room];
    if (last > 0 && msg.seq > last + 1) {
      // Messages before this one never reached us live (lost between nodes, say): fetch them.
      held.set(msg.room, [msg]);
      catchUp(msg.room);
      return;
    }
    noteSeq(msg.room, msg.seq);
    stopTyping(view, msg.author);
    showMessage(view, msg, !seeing(view));
  }
  socket.on('message', function (msg) { if (msg && typeof msg === 'object') receive(msg); });

  socket.on('announce', function (a) {
    if (!a || typeof a !== 'object') return;
    if (typeof a.count === 'number') roomCounts.set(a.room, a.count);
    var view = views.get(a.room);
    if (view && live.has(a.room)) {
      if (a.kind === 'join') joinedLine(view, a);
      else if (a.kind === 'leave') leftLine(view, a);
      else if (a.kind === 'rename') renamedLine(view, a);
      if (isShown(view)) renderRoster();
    }
    renderRooms();
    refreshRooms();
  });
  // Our own joins and leaves are not news to us. A leave line waits a moment: if the same
  // nickname joins meanwhile (a reconnect, a cluster node restarting) neither line is shown.
  function joinedLine(view, a) {
    addMember(view, a.nickname);
    if (cancelLeave(view, a.nickname)) return;
    if (a.nickname !== state.nickname && !returning(view, a.nickname)) {
      announceLine(view, a.nickname + ' joined', a.ts);
    }
  }
  // Everyone reconnects after a server restart: those we knew before ours are not news.
  function returning(view, nick) {
    var known = view.known;
    return !!known && Date.now() < known.until && known.names.delete(nick);
  }
  function leftLine(view, a) {
    removeMember(view, a.nickname);
    stopTyping(view, a.nickname);
    if (a.nickname === state.nickname) return;
    cancelLeave(view, a.nickname);
    holdLeave(view, {a: a, due: false});
  }
  function holdLeave(view, held) {
    clearTimeout(held.timer);
    held.timer = setTimeout(function () { held.due = true; showLeave(view, held); }, LEAVE_GRACE);
    view.leaves.set(held.a.nickname, held);
  }
  // Not while we are away ourselves: whether they came back is known once we rejoined.
  function showLeave(view, held) {
    if (!held.due || !live.has(view.name)) return;
    view.leaves.delete(held.a.nickname);
    announceLine(view, held.a.nickname + ' left', held.a.ts);
  }
  function cancelLeave(view, nick) {
    var held = view.leaves.get(nick);
    if (held) { clearTimeout(held.timer); view.leaves.delete(nick); }
    return !!held;
  }
  // Our rejoin's roster settles the leaves held meanwhile: back already, or given a new grace
  // (after a server restart everyone comes back, some after us).
  function settleLeaves(view) {
    view.leaves.forEach(function (held, nick) {
      if (view.roster.indexOf(nick) >= 0) cancelLeave(view, nick); else holdLeave(view, held);
    });
  }
  function renamedLine(view, a) {
    removeMember(view, a.previous);
    addMember(view, a.nickname);
    stopTyping(view, a.previous);
    announceLine(view, a.previous + ' is now ' + a.nickname, a.ts);
  }
  function addMember(view, nick) { if (view.roster.indexOf(nick) < 0) view.roster.push(nick); }
  function removeMember(view, nick) {
    var i = view.roster.indexOf(nick);
    if (i >= 0) view.roster.splice(i, 1);
  }
  function heldLeaves() {  // leave lines waiting for their grace (tests wait for none)
    var n = 0;
    views.forEach(function (view) { n += view.leaves.size; });
    return n;
  }

  socket.on('typing', function (t) {
    var view = t && views.get(t.room);
    if (!view || !t.nickname || t.nickname === state.nickname) return;
    clearTimeout(view.typers.get(t.nickname));
    view.typers.set(t.nickname, setTimeout(function () { stopTyping(view, t.nickname); }, 3000));
    if (isShown(view)) renderTyping();
  });

  function onError(err, serverOnly) {
    if (err && typeof err === 'object') {
      if (err.event === 'connect') { refused(err); return; }
      // Its request's ack says it (a flood ends the session: its ack may never come).
      if (err.code !== 'flood' && typeof err.id === 'string' && outstanding.has(err.id)) return;
      if (err.code || err.message) { notice(err.code || 'error', err.message || err.code); return; }
    }
    if (serverOnly) return;
    notice('transport', typeof err === 'string' && err ? 'Connection problem: ' + err : 'Connection problem.');
  }
  function refused(err) {  // the server refused us the chat (not signed in, say): said in the form
    refusal = err;
    nickError(err.code || 'error', err.message || err.code);
    el.nickInput.disabled = true;
  }
  // The server's own words say "restarting", which it cannot know: the page says what it knows.
  function onShutdown() {
    stopped = true;
    notice('shutdown', 'The server stopped; trying to reconnect…', {sticky: true});
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
  el.rename.addEventListener('click', openRename);
  el.renameCancel.addEventListener('click', function () { el.renameDialog.close(); });
  el.renameForm.addEventListener('submit', function (e) { e.preventDefault(); rename(el.renameInput.value); });
  el.renameInput.addEventListener('input', function () { renameError(''); });
  el.signOut.addEventListener('click', signOut);

  el.rooms.addEventListener('click', function (e) {
    var li = e.target.closest('li[data-room]');
    if (!li) return;
    if (e.target.closest('.leave-button')) leaveRoom(li.dataset.room); else openRoom(li.dataset.room, false);
  });
  // The room stays in the field until the server took it: a typo can be corrected.
  el.roomForm.addEventListener('submit', function (e) {
    e.preventDefault();
    var name = cleanRoom(el.roomInput.value), problem = roomProblem(name);
    if (problem) roomError('bad_room', problem); else openRoom(name, true);
  });
  el.roomInput.addEventListener('input', function () { roomError('', ''); });
  el.roomInput.addEventListener('focus', refreshRooms);

  function updateComposer() {
    var text = el.input.value, n = charCount(text), over = n > MAX_TEXT;
    el.counter.textContent = n + ' / ' + MAX_TEXT + (over ? ': too long' : '');
    el.counter.classList.toggle('over', over);
    el.input.setAttribute('aria-invalid', over ? 'true' : 'false');
    el.send.disabled = over || !text.trim();
  }
  function submitComposer() {
    var text = el.input.value;
    if (charCount(text) > MAX_TEXT) return;  // Send is disabled: the text stays, to be shortened
    // Nothing but spaces: nothing to send, and no spaces left behind.
    if (text.trim() && state.room && state.nickname) sendText(text);
    el.input.value = '';
    updateComposer();
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
    updateComposer();
    var now = Date.now();
    if (el.input.value.trim() && state.room && live.has(state.room) && now - lastTypingSent >= 2000) {
      lastTypingSent = now;
      request('typing', {room: state.room});
    }
  });
  el.jump.addEventListener('click', function () {
    scrollToEnd();
    checkSeen();
    el.input.focus();
  });
  document.addEventListener('visibilitychange', function () {
    checkSeen();
    if (!document.hidden) refreshRooms();
  });

  /* ---------- start ---------- */
  function start() { socket.socket.connect(); }
  if (document.readyState === 'complete') start(); else window.addEventListener('load', start);
  setStatus('connecting');
  updateComposer();
  if (askedRoom && !validRoom(askedRoom)) {
    notice('bad_room', 'There is no room "' + askedRoom + '" (a–z, 0–9, - and _): showing #' + initialRoom + '.');
  }
  if (wantNick) el.nickInput.value = wantNick;
  else if (savedNick) el.nickInput.value = savedNick;
})();

/* Narrow screens: the rooms and members panels fold away behind #panels-toggle (layout only; the
   CSS shows both panels on wide screens whatever the toggle says). */
(function () {
  'use strict';
  var toggle = document.getElementById('panels-toggle');
  var chat = document.getElementById('chat');
  var roomName = document.getElementById('room-name');
  if (!toggle || !chat) return;
  function setOpen(open) {
    toggle.setAttribute('aria-expanded', open ? 'true' : 'false');
    chat.classList.toggle('panels-open', open);
  }
  toggle.addEventListener('click', function () { setOpen(toggle.getAttribute('aria-expanded') !== 'true'); });
  // A room switched to (picked in the list or joined by name): back to the conversation.
  var shown = roomName ? roomName.textContent : '';
  if (roomName) {
    new MutationObserver(function () {
      if (roomName.textContent !== shown) { shown = roomName.textContent; setOpen(false); }
    }).observe(roomName, {childList: true, characterData: true, subtree: true});
  }
  document.getElementById('sidebar').addEventListener('keydown', function (e) {
    if (e.key === 'Escape' && toggle.getAttribute('aria-expanded') === 'true') { setOpen(false); toggle.focus(); }
  });
  // The rooms' unread counts (their .unread badges) add up on the toggle while the list is folded.
  var rooms = document.getElementById('rooms'), badge = document.getElementById('panels-unread');
  if (rooms && badge) {
    new MutationObserver(function () {
      var n = 0;
      rooms.querySelectorAll('.unread').forEach(function (u) { n += parseInt(u.textContent, 10) || 0; });
      var text = n > 99 ? '99+' : n ? String(n) : '';
      if (badge.textContent !== text) badge.textContent = text;
      if (n) toggle.setAttribute('aria-label', 'Rooms & members, ' + text + ' unread');
      else toggle.removeAttribute('aria-label');
    }).observe(rooms, {childList: true, subtree: true, characterData: true});
  }
})();
