/*!
 * Socketgram operator console: the page support staff sign in to and answer visitors from.
 * The web edge serves it at /console/ (index.html, this file, console.css), after the official
 * Socket.IO client at /socket.io/socket.io.min.js, which defines the global `io`.
 *
 * How it talks to the server (the README's "The operator console" has the details):
 *   - HTTP under /console/api/: the session, signing in and out (JSON; errors are
 *     {error: {code, message}});
 *   - one Socket.IO connection, opened only once the session is known, with auth {console: true}:
 *     every request is an emit answered by its acknowledgement ({data} or {error}), and the
 *     server pushes live events (new messages, who is online, typing, assignment, ...).
 *
 * This file, top to bottom: constants, the dictionary (en, ru), helpers, the state store, the
 * HTTP and socket wrappers, the data and its live events, the session and the URL, one render
 * function per region of the page, the user's actions, and the wiring of DOM events.
 *
 * Whatever a visitor, an admin or the server wrote is inserted with textContent only (h()
 * makes text nodes of strings): never HTML from data. The page's CSP allows no inline script
 * or style, so all behaviour is here and all styling in console.css.
 */
(function () {
  'use strict';

  /** How long an acknowledgement may take before the request counts as lost. */
  const ACK_TIMEOUT_MS = 10000;
  /** The pause after the last keystroke in the search box before searching. */
  const SEARCH_DELAY_MS = 300;
  /** At most one typing:servadm per this while the reply changes. */
  const TYPING_EVERY_MS = 1000;
  /** How long a typing hint stays when the event does not say. */
  const TYPING_SHOWN_MS = 5000;
  /** How close to the top of the history (px) scrolling fetches older messages. */
  const OLDER_MARGIN_PX = 80;
  /** The box (CSS pixels) an image's thumbnail is scaled into. */
  const THUMB_BOX = 240;
  const API = '/console/api/';
  const LANG_KEY = 'socketgram.console.lang';
  const NOTIFY_KEY = 'socketgram.console.notify';
  const FILTERS = ['all', 'mine', 'unassigned', 'open', 'pending', 'resolved'];
  const NARROW = window.matchMedia('(max-width: 719.98px)');
  const WIDE = window.matchMedia('(min-width: 1100px)');

  // ---- the dictionary: every text of the page, by language ----
  // A value is a string with {placeholders}, or plural forms by Intl.PluralRules category.
  // Keys "server.<code>" (or "server.<context>.<code>") put the server's English refusals in
  // another language; where a language has none, the server's own words show.
  const DICT = {
    en: {
      'loading': 'Loading…', 'retry': 'Try again', 'close': 'Close', 'edit': 'Edit', 'you': 'You',
      'language': 'Language', 'links': 'Links', 'links.demo': 'Demo', 'links.health': 'Health',
      'links.try': 'Test as a visitor',
      'signIn.lead': 'Sign in to answer your visitors.', 'signIn.login': 'Login',
      'signIn.password': 'Password', 'signIn.submit': 'Sign in', 'signIn.busy': 'Signing in…',
      'signIn.missing': 'Enter your login and password.',
      'firstRun.title': 'Set up the first admin',
      'firstRun.lead': 'No one can sign in yet. Create the first admin on the server:',
      'firstRun.then': 'Then:', 'firstRun.reload': 'Reload this page',
      'copy': 'Copy', 'copied': 'Copied.',
      'copy.manual': 'The command is selected: press Ctrl+C (⌘C on a Mac) to copy it.',
      'signedInAs': 'Signed in as',
      'conn.connecting': 'Connecting…', 'conn.reconnecting': 'Reconnecting…',
      'conn.broken': 'The live connection cannot start: the Socket.IO client did not load.',
      'visitorsOnline': { one: '{n} visitor online', other: '{n} visitors online' },
      'settings': 'Settings', 'notify': 'Notifications and sound',
      'notify.on': 'You are told of visitor messages when this tab is in the background or another conversation is open.',
      'notify.denied': 'The browser blocks notifications for this site: only the sound will play.',
      'notify.unsupported': 'This browser cannot show notifications here (they need HTTPS): only the sound will play.',
      'notify.title': 'New message: {name}', 'notify.new': 'New conversation: {name}',
      'shortcuts': 'Keyboard shortcuts', 'signOut': 'Sign out', 'signOutEverywhere': 'Sign out everywhere',
      'inbox': 'Inbox', 'filter': 'Show', 'filter.all': 'All', 'filter.mine': 'Mine',
      'filter.unassigned': 'Unassigned', 'filter.open': 'Open', 'filter.pending': 'Pending',
      'filter.resolved': 'Resolved',
      'search': 'Search', 'search.placeholder': 'Visitor id, name or words',
      'onlineNow': 'Online now', 'onlineNow.none': 'No visitors on the site right now.',
      'teamOnline': 'Support online: {list}',
      'inbox.loading': 'Loading conversations…', 'inbox.searching': 'Searching…',
      'inbox.empty': 'No conversations here.', 'inbox.noResults': 'Nothing found for “{q}”.',
      'inbox.noMessage': 'No messages yet', 'loadMore': 'Load more',
      'visitor': 'Visitor {cid}', 'online': 'online', 'offline': 'offline',
      'unread': { one: '{n} unread', other: '{n} unread' },
      'assignee': 'Assignee:', 'assignee.nobody': 'Unassigned', 'assignee.me': 'Assigned to you',
      'assignee.other': 'Assigned to {login}',
      'status.open': 'Open', 'status.pending': 'Pending', 'status.resolved': 'Resolved',
      'status.snoozed': 'Snoozed', 'status.snoozedUntil': 'Snoozed until {time}',
      'channel.web': 'Web', 'channel.telegram': 'Telegram',
      'conv.pick': 'Pick a conversation from the inbox.', 'back': 'Back',
      'take': 'Take', 'unassign': 'Unassign', 'statusGroup': 'Status',
      'set.open': 'Open', 'set.pending': 'Pending', 'set.resolved': 'Resolve', 'set.reopen': 'Reopen',
      'messages': 'Messages', 'messages.none': 'No messages yet.',
      'messages.older': 'Loading older messages…', 'messages.start': 'This is the beginning of the conversation.',
      'seen': 'Seen', 'sending': 'Sending…', 'waiting': 'Waiting for the connection…',
      'notSent': 'Not sent: {reason}',
      'typing.visitor': 'Visitor is typing…', 'typing.named': '{name} is typing…',
      'typing.colleague': 'A colleague is typing…',
      'reply': 'Reply', 'send': 'Send', 'canned': 'Canned replies',
      'reply.hint': 'Enter sends, Shift+Enter starts a new line, / picks a canned reply',
      'details': 'Details', 'visitorPanel': 'Visitor', 'notes': 'Private notes',
      'notes.hint': 'Private note, the visitor does not see it', 'notes.add': 'Add a private note',
      'notes.submit': 'Add note', 'notes.none': 'No notes yet.', 'notes.private': 'Private',
      'verified': 'verified by your site', 'reported': 'reported by the page',
      'field.id': 'Visitor id', 'field.name': 'Name', 'field.email': 'Email', 'field.url': 'Page',
      'field.title': 'Page title', 'field.language': 'Language', 'field.timeZone': 'Time zone',
      'context.none': 'Nothing is known about this visitor yet.', 'context.updated': 'Updated {time}',
      'erased': 'The conversation with visitor {cid} was erased by {by}.',
      'error.timeout': 'The server did not answer in time. Try again.',
      'error.network': 'Cannot reach the server. Check the connection and try again.',
      'error.unexpected': 'The server sent an answer this page does not understand.',
      'shortcuts.j': 'Next conversation', 'shortcuts.k': 'Previous conversation',
      'shortcuts.u': 'Next conversation with unread messages', 'shortcuts.r': 'Write a reply',
      'shortcuts.e': 'Resolve the open conversation', 'shortcuts.help': 'Show this list',
      'shortcuts.esc': 'Leave the reply box',
      'attach': 'Attach files', 'files.tray': 'Files to send', 'files.drop': 'Drop files here to attach them',
      'files.remove': 'Remove {name}', 'files.retry': 'Try again: {name}', 'files.uploading': 'Uploading {name}',
      'files.uploaded': '{name} uploaded', 'files.busy': 'Send is ready once the files have uploaded',
      'files.tooLarge': '{name} is larger than {max}', 'files.type': '{name}: this type of file is not accepted',
      'files.empty': '{name} is empty',
      'files.tooMany': { one: '{name}: at most {n} file goes with one reply', other: '{name}: at most {n} files go with one reply' },
      'files.expired': '{name}: the upload took too long to start; try again',
      'files.network': '{name}: the upload did not reach the server',
      'files.noUrl': '{name}: the server gave no address to upload to', 'files.refused': '{name}: {reason}',
      'size.B': '{n} B', 'size.KB': '{n} KB', 'size.MB': '{n} MB', 'size.GB': '{n} GB', 'size.TB': '{n} TB',
    },
    ru: {
      'loading': 'Загрузка…', 'retry': 'Повторить', 'close': 'Закрыть', 'edit': 'Изменить', 'you': 'Вы',
      'language': 'Язык', 'links': 'Ссылки', 'links.demo': 'Демо', 'links.health': 'Состояние сервера',
      'links.try': 'Проверить как посетитель',
      'signIn.lead': 'Войдите, чтобы отвечать посетителям сайта.', 'signIn.login': 'Логин',
      'signIn.password': 'Пароль', 'signIn.submit': 'Войти', 'signIn.busy': 'Входим…',
      'signIn.missing': 'Введите логин и пароль.',
      'firstRun.title': 'Создайте первого администратора',
      'firstRun.lead': 'Войти пока никто не может. Создайте первого администратора на сервере:',
      'firstRun.then': 'Затем:', 'firstRun.reload': 'Перезагрузите эту страницу',
      'copy': 'Копировать', 'copied': 'Скопировано.',
      'copy.manual': 'Команда выделена: нажмите Ctrl+C (⌘C на Mac), чтобы скопировать её.',
      'signedInAs': 'Вы вошли как',
      'conn.connecting': 'Подключение…', 'conn.reconnecting': 'Переподключение…',
      'conn.broken': 'Не удаётся установить соединение: клиент Socket.IO не загрузился.',
      'visitorsOnline': {
        one: '{n} посетитель на сайте', few: '{n} посетителя на сайте',
        many: '{n} посетителей на сайте', other: '{n} посетителя на сайте',
      },
      'settings': 'Настройки', 'notify': 'Уведомления и звук',
      'notify.on': 'Вы узнаете о сообщениях посетителей, когда эта вкладка в фоне или открыт другой разговор.',
      'notify.denied': 'Браузер запретил уведомления для этого сайта: будет только звук.',
      'notify.unsupported': 'Здесь браузер не может показывать уведомления (нужен HTTPS): будет только звук.',
      'notify.title': 'Новое сообщение: {name}', 'notify.new': 'Новый разговор: {name}',
      'shortcuts': 'Горячие клавиши', 'signOut': 'Выйти', 'signOutEverywhere': 'Выйти на всех устройствах',
      'inbox': 'Входящие', 'filter': 'Показать', 'filter.all': 'Все', 'filter.mine': 'Мои',
      'filter.unassigned': 'Без ответственного', 'filter.open': 'Открытые', 'filter.pending': 'В ожидании',
      'filter.resolved': 'Решённые',
      'search': 'Поиск', 'search.placeholder': 'Номер, имя посетителя или слова',
      'onlineNow': 'Сейчас на сайте', 'onlineNow.none': 'Сейчас на сайте никого нет.',
      'teamOnline': 'Поддержка в сети: {list}',
      'inbox.loading': 'Загружаем разговоры…', 'inbox.searching': 'Ищем…',
      'inbox.empty': 'Здесь нет разговоров.', 'inbox.noResults': 'По запросу «{q}» ничего не найдено.',
      'inbox.noMessage': 'Сообщений пока нет', 'loadMore': 'Показать ещё',
      'visitor': 'Посетитель {cid}', 'online': 'на сайте', 'offline': 'не на сайте',
      'unread': {
        one: '{n} непрочитанное', few: '{n} непрочитанных', many: '{n} непрочитанных',
        other: '{n} непрочитанного',
      },
      'assignee': 'Ответственный:', 'assignee.nobody': 'Без ответственного',
      'assignee.me': 'Ответственный — вы', 'assignee.other': 'Ответственный — {login}',
      'status.open': 'Открыт', 'status.pending': 'В ожидании', 'status.resolved': 'Решён',
      'status.snoozed': 'Отложен', 'status.snoozedUntil': 'Отложен до {time}',
      'channel.web': 'Сайт', 'channel.telegram': 'Telegram',
      'conv.pick': 'Выберите разговор во входящих.', 'back': 'Назад',
      'take': 'Взять себе', 'unassign': 'Снять с себя', 'statusGroup': 'Статус',
      'set.open': 'Открыть', 'set.pending': 'В ожидание', 'set.resolved': 'Решено',
      'set.reopen': 'Открыть снова',
      'messages': 'Сообщения', 'messages.none': 'Сообщений пока нет.',
      'messages.older': 'Загружаем более ранние сообщения…', 'messages.start': 'Это начало разговора.',
      'seen': 'Прочитано', 'sending': 'Отправляем…', 'waiting': 'Ждём соединения…',
      'notSent': 'Не отправлено: {reason}',
      'typing.visitor': 'Посетитель печатает…', 'typing.named': '{name} печатает…',
      'typing.colleague': 'Коллега печатает…',
      'reply': 'Ответ', 'send': 'Отправить', 'canned': 'Готовые ответы',
      'reply.hint': 'Enter — отправить, Shift+Enter — новая строка, / — готовые ответы',
      'details': 'Подробности', 'visitorPanel': 'Посетитель', 'notes': 'Внутренние заметки',
      'notes.hint': 'Внутренняя заметка, посетитель её не видит', 'notes.add': 'Добавить внутреннюю заметку',
      'notes.submit': 'Добавить', 'notes.none': 'Заметок пока нет.', 'notes.private': 'Внутренняя',
      'verified': 'подтверждено вашим сайтом', 'reported': 'по данным страницы',
      'field.id': 'Номер посетителя', 'field.name': 'Имя', 'field.email': 'Эл. почта',
      'field.url': 'Страница', 'field.title': 'Заголовок страницы', 'field.language': 'Язык',
      'field.timeZone': 'Часовой пояс',
      'context.none': 'О посетителе пока ничего не известно.', 'context.updated': 'Обновлено {time}',
      'erased': 'Разговор с посетителем {cid} удалён администратором {by}.',
      'error.timeout': 'Сервер не ответил вовремя. Попробуйте ещё раз.',
      'error.network': 'Не удаётся связаться с сервером. Проверьте подключение и попробуйте ещё раз.',
      'error.unexpected': 'Сервер прислал ответ, который эта страница не понимает.',
      'shortcuts.j': 'Следующий разговор', 'shortcuts.k': 'Предыдущий разговор',
      'shortcuts.u': 'Следующий разговор с непрочитанными', 'shortcuts.r': 'Перейти к ответу',
      'shortcuts.e': 'Отметить открытый разговор решённым', 'shortcuts.help': 'Показать этот список',
      'shortcuts.esc': 'Выйти из поля ответа',
      'attach': 'Прикрепить файлы', 'files.tray': 'Файлы к отправке',
      'files.drop': 'Отпустите файлы здесь, чтобы прикрепить их',
      'files.remove': 'Убрать {name}', 'files.retry': 'Повторить: {name}', 'files.uploading': 'Загрузка {name}',
      'files.uploaded': '{name}: загружено', 'files.busy': 'Отправить можно, когда файлы загрузятся',
      'files.tooLarge': '{name}: файл больше {max}', 'files.type': '{name}: файлы такого типа не принимаются',
      'files.empty': '{name}: файл пустой',
      'files.tooMany': {
        one: '{name}: к одному ответу — не больше {n} файла', few: '{name}: к одному ответу — не больше {n} файлов',
        many: '{name}: к одному ответу — не больше {n} файлов', other: '{name}: к одному ответу — не больше {n} файла',
      },
      'files.expired': '{name}: загрузка не началась вовремя, попробуйте ещё раз',
      'files.network': '{name}: файл не дошёл до сервера',
      'files.noUrl': '{name}: сервер не дал адрес для загрузки', 'files.refused': '{name}: {reason}',
      'size.B': '{n} Б', 'size.KB': '{n} КБ', 'size.MB': '{n} МБ', 'size.GB': '{n} ГБ', 'size.TB': '{n} ТБ',
      'server.upload.truncated': 'файл пришёл не целиком, попробуйте ещё раз',
      'server.upload.unavailable': 'хранилище файлов сейчас недоступно, попробуйте позже',
      'server.signIn.unauthenticated': 'Неверный логин или пароль.',
      'server.signIn.rate_limited': 'Слишком много попыток. Попробуйте снова через {n} с.',
      'server.session_expired': 'Сессия истекла, войдите снова.',
      'server.csrf': 'Страница устарела: перезагрузите её и попробуйте снова.',
    },
  };

  // ---- helpers ----

  /** localStorage that may be missing or refuse (private modes, sandboxes). */
  const local = {
    get(key) {
      try { return window.localStorage.getItem(key); } catch (_) { return null; }
    },
    set(key, value) {
      try {
        if (value === null) window.localStorage.removeItem(key);
        else window.localStorage.setItem(key, value);
      } catch (_) { /* a setting not kept is a nicety lost, not an error */ }
    },
  };

  /** The saved language, else the browser's when it is Russian, else English. */
  let lang = DICT[local.get(LANG_KEY)] ? local.get(LANG_KEY) : /^ru\b/i.test(navigator.language || '') ? 'ru' : 'en';
  let plurals = new Intl.PluralRules(lang);

  /** The text for `key` in the current language, with {placeholders} filled from `params`. */
  function t(key, params) {
    let entry = DICT[lang][key] !== undefined ? DICT[lang][key] : DICT.en[key];
    if (entry && typeof entry === 'object') entry = entry[plurals.select(Number(params.n))] || entry.other;
    if (typeof entry !== 'string') return key;
    return entry.replace(/\{(\w+)\}/g, (_, name) => (params && params[name] !== undefined ? String(params[name]) : ''));
  }

  /** Words for a refusal of the server: this language's, by code, else the server's own. */
  function serverText(error, context) {
    if (!error) return t('error.unexpected');
    const key = [`server.${context}.${error.code}`, `server.${error.code}`].find((k) => DICT[lang][k]);
    return key ? t(key, error) : String(error.message || error.code || t('error.unexpected'));
  }

  /** Builds an element; strings become text nodes (never HTML), null children are skipped. */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === false || value === null || value === undefined) continue;
      if (key === 'class') el.className = value;
      else el.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined && child !== false) el.append(child);
    }
    return el;
  }

  /**
   * Rebuilds a container's children only when `key` (what they show) changed: rebuilding at
   * every event would take the focus away from a button inside.
   */
  function refill(container, key, build) {
    const full = `${lang}|${key}`;
    if (container.sgKey === full) return;
    container.sgKey = full;
    container.replaceChildren(...build().filter(Boolean));
  }

  /** A visitor id (cid) from a number or a numeric string; null when it is not one. */
  function toCid(value) {
    const n = Number(value);
    return Number.isSafeInteger(n) && n > 0 ? n : null;
  }

  /** A fresh client_msg_id. randomUUID exists only on HTTPS or localhost; a console reached
   *  over plain HTTP on a LAN address needs ids too. */
  function randomId() {
    if (window.crypto.randomUUID) return window.crypto.randomUUID();
    return Array.from(window.crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');
  }

  /** A <time> for a server date `YYYY-MM-DD HH:MM:SS` (server time): HH:MM when it is today. */
  function timeEl(date, cls) {
    if (!date) return null;
    const m = /^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2})(:\d{2})?$/.exec(date);
    const now = new Date();
    const today = `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, '0')}-${String(now.getDate()).padStart(2, '0')}`;
    return h('time', { class: cls, datetime: m ? date : null, title: date }, m && m[1] === today ? m[2] : date);
  }

  /** Milliseconds since 1970 in the reader's language: the time alone when it is today. */
  function formatMs(ms) {
    const d = new Date(Number(ms));
    if (Number.isNaN(d.getTime())) return '';
    return d.toDateString() === new Date().toDateString()
      ? d.toLocaleTimeString(lang, { hour: '2-digit', minute: '2-digit' })
      : d.toLocaleString(lang, { dateStyle: 'medium', timeStyle: 'short' });
  }

  /** Whether keys typed now go into a text field (and so are no shortcuts). */
  function inTextField(el) {
    if (!el || !el.tagName) return false;
    if (el.isContentEditable || el.tagName === 'TEXTAREA' || el.tagName === 'SELECT') return true;
    return el.tagName === 'INPUT' && !['checkbox', 'radio', 'button', 'submit', 'reset'].includes(el.type);
  }

  /** A same-origin path from the server's links, or null (never javascript: or another site). */
  const localPath = (href) => (typeof href === 'string' && /^\/(?!\/)/.test(href) ? href : null);

  /** A size as people read it, in the reader's language: "532 B", "12 KB", "1.4 MB". */
  function humanSize(bytes) {
    const n = Math.max(0, Number(bytes) || 0);
    if (n < 1024) return t('size.B', { n });
    const units = ['KB', 'MB', 'GB', 'TB'];
    let value = n / 1024;
    let unit = 0;
    while (value >= 1024 && unit + 1 < units.length) {
      value /= 1024;
      unit += 1;
    }
    const digits = value < 10 ? 1 : 0;
    return t(`size.${units[unit]}`, { n: value.toLocaleString(lang, { minimumFractionDigits: digits, maximumFractionDigits: digits }) });
  }

  /** Width and height attributes that fit an image of w x h into THUMB_BOX (the layout does
   *  not jump when it loads); none when the size is not known. */
  function thumbSize(w, h) {
    if (!(w > 0 && h > 0)) return {};
    const scale = Math.min(1, THUMB_BOX / w, THUMB_BOX / h);
    return { width: Math.max(1, Math.round(w * scale)), height: Math.max(1, Math.round(h * scale)) };
  }

  /** Whether a file the browser calls `type` is worth uploading where the server takes
   *  `types`. Only a hint: the server tells the type from the content. Unknown types go up
   *  (the server decides), and so does any plain text, which it stores as text/plain. */
  function typeAccepted(type, types) {
    if (!type || !types) return true;
    if (types.includes(type)) return true;
    return types.includes('text/plain') && /^text\//.test(type) && !/html|xml/.test(type);
  }

  /** The files of a message from the wire, checked; their addresses same-origin paths only. */
  function attachmentsOf(raw) {
    if (!Array.isArray(raw)) return [];
    return raw.filter((a) => a && typeof a === 'object' && a.id !== undefined && a.id !== null).map((a) => ({
      id: a.id,
      name: typeof a.name === 'string' && a.name ? a.name : 'file',
      type: typeof a.type === 'string' ? a.type : '',
      size: Number(a.size) || 0,
      width: Number(a.width) || 0,
      height: Number(a.height) || 0,
      url: localPath(a.url),
      thumbUrl: localPath(a.thumb_url),
    }));
  }

  /** Whether two lists of files hold the same ids in the same order. */
  const sameFiles = (a, b) => a.length === b.length && a.every((f, i) => String(f.id) === String(b[i].id));

  /** A message's text for a one-line preview: its files named when it has no text. */
  const previewText = (m) => m.text || m.attachments.map((a) => `📎 ${a.name}`).join(', ');

  // ---- the state store ----
  // All the page knows lives in `state`. Code changes it, then calls changed('region', ...);
  // the regions are redrawn once, when the current task ends. A microtask, not an animation
  // frame: frames stop in a background tab, and the title must count unread messages there.

  const state = {
    screen: 'loading', // 'loading' | 'auth' | 'app'
    loadError: '',
    auth: { firstRun: false, commands: [], error: '', notice: '', busy: false, copyStatus: '' },
    session: null, // {admin, csrf, expires_at_ms, links} of GET /console/api/session
    links: null,
    connection: 'connecting', // 'connecting' | 'online' | 'reconnecting' | 'broken'
    convs: new Map(), // cid -> Conversation: every conversation this page knows
    inbox: { filter: 'all', cids: new Set(), hasMore: false, loading: false, error: '' },
    search: null, // {query, cids, loading, error} while the search box has text
    online: new Set(), // cids of the visitors on the site now
    admins: [],
    openCid: null,
    thread: null, // the open conversation: see newThread()
    pending: new Map(), // cid -> replies on their way: [{id, text, attachments, state, error, matched}]
    // cid -> files chosen for the next reply: [{key, file, name, size, state ('uploading' |
    // 'done' | 'failed'), progress, error, retry, xhr, attachment}]
    files: new Map(),
    // {maxBytes, maxFiles, types} as the last ticket said; null before one came (the server
    // may be set to take more than its defaults)
    fileLimits: null,
    drafts: new Map(), // cid -> the reply box's text while another conversation is open
    editing: null, // {cid, id, text, attachments}: a reply that failed, back in the box (it keeps its id)
    replyError: '',
    canned: null, // {items: [{shortcut, text}], active} while the reply is "/prefix"
    notify: local.get(NOTIFY_KEY) === '1',
    notice: '',
    error: '',
  };

  const RENDER_ORDER = ['screen', 'auth', 'header', 'title', 'filters', 'online', 'inbox',
    'conversation', 'messages', 'typing', 'reply', 'files', 'canned', 'notes', 'visitor'];
  const dirty = new Set();

  /** Marks regions to redraw at the end of the current task. */
  function changed(...regions) {
    if (!dirty.size) queueMicrotask(flush);
    for (const region of regions) if (region) dirty.add(region);
  }

  function flush() {
    const regions = RENDER_ORDER.filter((r) => dirty.has(r));
    dirty.clear();
    for (const region of regions) RENDER[region]();
  }

  /** The open conversation's view: what its history shows and what it waits for. */
  function newThread(cid) {
    return {
      cid,
      messages: new Map(), // label -> Message
      labels: [], // ascending
      hasMore: false,
      loaded: false,
      loadingOlder: false,
      notes: [],
      notesLoaded: false,
      typing: new Map(), // who -> {visitor, name, preview, timer}
      readSent: 0,
      scroll: 'end', // go to the newest message at the next render
      busy: false,
      error: '',
    };
  }

  const me = () => (state.session && state.session.admin) || {};
  const connected = () => Boolean(socket && socket.connected);

  // ---- HTTP and the socket ----

  /** One call of the HTTP API: {status, body}; throws {code, message} when the server
   *  cannot be reached at all. */
  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (method === 'POST' && state.session) headers['X-CSRF-Token'] = state.session.csrf;
    let response;
    try {
      response = await fetch(API + path, {
        method, headers, credentials: 'same-origin', cache: 'no-store',
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (_) {
      throw { code: 'network', message: t('error.network') };
    }
    let data = null;
    if (response.status !== 204) {
      try { data = await response.json(); } catch (_) { data = null; }
    }
    return { status: response.status, body: data };
  }

  let socket = null;
  let retryTimer = null;

  /**
   * A request on the socket: resolves the answer's data, or rejects with {code, message}
   * (the server's refusal, or code "timeout" when no answer came in time).
   */
  function request(name, payload) {
    return new Promise((resolve, reject) => {
      if (!socket) {
        reject({ code: 'unavailable', message: t('conn.reconnecting') });
        return;
      }
      socket.timeout(ACK_TIMEOUT_MS).emit(name, payload || {}, (err, answer) => {
        if (err) reject({ code: 'timeout', message: t('error.timeout') });
        else if (answer && answer.error) reject({ code: String(answer.error.code || 'error'), message: serverText(answer.error, 'socket') });
        else if (answer && 'data' in answer) resolve(answer.data);
        else reject({ code: 'unexpected', message: t('error.unexpected') });
      });
    });
  }

  /** Opens the live connection (once the session is known: its cookie authenticates it). */
  function connect() {
    if (socket) return;
    if (typeof window.io !== 'function') {
      state.connection = 'broken';
      changed('header');
      return;
    }
    state.connection = 'connecting';
    socket = window.io({ auth: { console: true }, transports: ['websocket', 'polling'] });
    socket.on('connect', onConnect);
    socket.on('connect_error', onConnectError);
    socket.on('disconnect', onDisconnect);
    for (const [name, handler] of Object.entries(EVENTS)) {
      socket.on(name, (payload) => payload && typeof payload === 'object' && handler(payload));
    }
    changed('header');
  }

  function disconnect() {
    clearTimeout(retryTimer);
    if (!socket) return;
    socket.removeAllListeners();
    socket.disconnect();
    socket = null;
  }

  function onConnect() {
    state.connection = 'online';
    state.online.clear(); // the server tells everyone on the site again, right after connecting
    changed('header', 'online', 'inbox', 'conversation');
    if (state.search) runSearch(state.search.query, true);
    loadInbox(false);
    loadOnline();
    if (state.thread) loadThread(state.thread);
    for (const [cid, items] of state.pending) {
      for (const item of items) if (item.state === 'queued') sendItem(cid, item);
    }
  }

  function onConnectError(err) {
    if (/session/i.test((err && err.message) || '')) {
      // The session ended (expired, signed out elsewhere): ask what to show instead.
      disconnect();
      checkSession();
      return;
    }
    state.connection = 'reconnecting';
    changed('header');
    // A refused handshake stops the client's own retries: try again a little later.
    if (socket && !socket.active) {
      clearTimeout(retryTimer);
      retryTimer = setTimeout(() => socket && socket.connect(), 3000 + Math.random() * 2000);
    }
  }

  function onDisconnect(reason) {
    state.connection = 'reconnecting';
    changed('header');
    if (reason === 'io server disconnect') {
      // The server closed it, most often because this admin signed out everywhere; the
      // client does not reconnect by itself then. Ask the session first.
      checkSession().then((signedIn) => signedIn && socket && !socket.connected && socket.connect());
    }
  }

  // ---- conversations and messages ----

  /** A Message from the wire, checked, with its numbers as numbers; null if unusable. */
  function normMessage(raw) {
    const label = Number(raw && raw.label);
    const cid = raw && toCid(raw.username);
    if (!Number.isSafeInteger(label) || label <= 0 || !cid) return null;
    const adm = raw.adm === undefined || raw.adm === null ? '0' : String(raw.adm);
    return {
      cid, label, adm, fromVisitor: adm === '0',
      text: typeof raw.message === 'string' ? raw.message : String(raw.message ?? ''),
      date: typeof raw.date === 'string' ? raw.date : '',
      author: typeof raw.author === 'string' ? raw.author : '',
      attachments: attachmentsOf(raw.attachments),
    };
  }

  /** Stores what the server says of a conversation over what was known; returns it. */
  function mergeConv(raw) {
    const cid = raw && toCid(raw.cid);
    if (!cid) return null;
    const conv = state.convs.get(cid) || { cid, status: 'open', unread_by_support: 0 };
    const known = conv.last_message;
    Object.assign(conv, raw, { cid });
    if (!raw.assignee) delete conv.assignee; // absent means nobody
    const fresh = raw.last_message ? normMessage(raw.last_message) : null;
    conv.last_message = fresh && (!known || fresh.label >= known.label) ? fresh : known;
    if (!conv.last_message) delete conv.last_message;
    state.convs.set(cid, conv);
    return conv;
  }

  function visitorName(conv) {
    const verified = conv && conv.context && conv.context.verified;
    return verified && verified.name ? String(verified.name) : t('visitor', { cid: conv ? conv.cid : '' });
  }

  function isOnline(cid) {
    const conv = state.convs.get(cid);
    return state.online.has(cid) || Boolean(conv && conv.online === true);
  }

  function matchesFilter(conv, filter) {
    if (filter === 'mine') return conv.assignee === me().login;
    if (filter === 'unassigned') return !conv.assignee;
    return filter === 'all' || conv.status === filter;
  }

  /** The cids the inbox shows, in its order: the newest last message first. */
  function visibleCids() {
    const convs = [...(state.search ? state.search.cids : state.inbox.cids)]
      .map((cid) => state.convs.get(cid))
      .filter((c) => c && (state.search || matchesFilter(c, state.inbox.filter)));
    const label = (c) => (c.last_message ? c.last_message.label : 0);
    return convs.sort((a, b) => label(b) - label(a) || b.cid - a.cid).map((c) => c.cid);
  }

  /** Puts a message into the thread in label order; false when it was there already. */
  function addMessage(thread, m) {
    if (thread.messages.has(m.label)) return false;
    thread.messages.set(m.label, m);
    let lo = 0;
    let hi = thread.labels.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (thread.labels[mid] < m.label) lo = mid + 1;
      else hi = mid;
    }
    thread.labels.splice(lo, 0, m.label);
    return true;
  }

  /**
   * A message arrived (the live event, or with `live` false the answer to our own reply): its
   * conversation moves up the inbox, the open one shows it, and a visitor's message counts as
   * unread unless it is in view.
   */
  function receiveMessage(m, live) {
    let conv = state.convs.get(m.cid);
    const isNew = !conv;
    if (isNew) {
      conv = mergeConv({ cid: m.cid, online: state.online.has(m.cid) });
      fetchConversation(m.cid);
    }
    const known = Boolean(conv.last_message && conv.last_message.label >= m.label);
    if (!known) conv.last_message = m;
    state.inbox.cids.add(m.cid);
    const thread = state.thread && state.thread.cid === m.cid ? state.thread : null;
    let fresh = !known;
    if (thread) {
      fresh = addMessage(thread, m);
      if (m.fromVisitor) dropTyping(thread, 'visitor');
      else if (m.author && m.author === me().login) {
        // Our reply's event may come before its acknowledgement: hide the pending copy now.
        const item = (state.pending.get(m.cid) || []).find((p) => p.state === 'sending' && !p.matched && p.text === m.text
          && sameFiles(p.attachments, m.attachments));
        if (item) item.matched = true;
      }
    }
    if (m.fromVisitor && live && fresh) {
      if (thread && !document.hidden) markRead();
      else conv.unread_by_support = (Number(conv.unread_by_support) || 0) + 1;
      if (!thread || document.hidden) attention(conv, m, isNew);
    }
    changed('inbox', 'title', thread && 'messages', thread && 'typing');
  }

  async function fetchConversation(cid) {
    try {
      mergeConv(await request('conversation:servadm', { username: cid }));
      if (state.thread && state.thread.cid === cid) markRead();
      changed('inbox', 'title', 'conversation', 'visitor', 'messages');
    } catch (_) { /* the row stays as the message made it; the next inbox load fills it */ }
  }

  function dropTyping(thread, key) {
    const entry = thread.typing.get(key);
    if (entry) clearTimeout(entry.timer);
    thread.typing.delete(key);
  }

  /** A note (our own answer, or the event) for the open conversation: shown once. */
  function addNote(raw) {
    const thread = state.thread;
    if (!thread || toCid(raw.cid) !== thread.cid || thread.notes.some((n) => n.id === raw.id)) return;
    thread.notes.push(raw);
    thread.notes.sort((a, b) => (a.created_at_ms - b.created_at_ms) || (a.id - b.id));
    changed('notes');
  }

  function setOnline(cid, online) {
    if (!cid) return;
    if (online) state.online.add(cid);
    else state.online.delete(cid);
    const conv = state.convs.get(cid);
    if (conv) conv.online = online;
    changed('header', 'online', 'inbox', 'conversation');
  }

  /** Handlers of the server's live events, by name; each gets an object payload. */
  const EVENTS = {
    'new message'(raw) {
      const m = normMessage(raw);
      if (m) receiveMessage(m, true);
    },
    online: ({ cid }) => setOnline(toCid(cid), true),
    offline: ({ cid }) => setOnline(toCid(cid), false),
    read({ cid, reader, mid }) {
      const conv = state.convs.get(toCid(cid));
      const mark = Number(mid);
      if (!conv || !Number.isSafeInteger(mark)) return;
      if (reader === 'visitor') conv.visitor_read_up_to = Math.max(Number(conv.visitor_read_up_to) || 0, mark);
      if (reader === 'support') {
        conv.support_read_up_to = Math.max(Number(conv.support_read_up_to) || 0, mark);
        // Read in another tab or by a colleague: nothing up to the mark is unread any more.
        if (!conv.last_message || mark >= conv.last_message.label) conv.unread_by_support = 0;
      }
      changed('messages', 'inbox', 'title');
    },
    typing(ev) {
      const thread = state.thread;
      if (!thread || toCid(ev.cid) !== thread.cid) return;
      const visitor = ev.typist === 'visitor';
      const name = typeof ev.name === 'string' ? ev.name : '';
      if (!visitor && name && name === me().display_name) return; // ourselves, in another tab
      const key = visitor ? 'visitor' : `support:${name}`;
      dropTyping(thread, key);
      if (ev.active) {
        const entry = { visitor, name, preview: typeof ev.preview === 'string' ? ev.preview : '' };
        entry.timer = setTimeout(() => {
          if (thread.typing.get(key) !== entry) return;
          thread.typing.delete(key);
          changed('typing');
        }, Number(ev.shown_for_ms) > 0 ? Number(ev.shown_for_ms) : TYPING_SHOWN_MS);
        thread.typing.set(key, entry);
      }
      changed('typing');
    },
    assigned(ev) {
      const conv = state.convs.get(toCid(ev.cid));
      if (!conv) return;
      if (typeof ev.assignee === 'string' && ev.assignee) conv.assignee = ev.assignee;
      else delete conv.assignee;
      changed('inbox', 'conversation');
    },
    status(ev) {
      const conv = state.convs.get(toCid(ev.cid));
      if (!conv || typeof ev.status !== 'string') return;
      conv.status = ev.status;
      if (ev.snoozed_until_ms) conv.snoozed_until_ms = ev.snoozed_until_ms;
      else delete conv.snoozed_until_ms;
      changed('inbox', 'conversation');
    },
    note: (ev) => addNote(ev),
    context(ev) {
      const conv = state.convs.get(toCid(ev.cid));
      if (!conv) return;
      conv.context = ev;
      changed('inbox', 'conversation', 'visitor');
    },
    erased(ev) {
      const cid = toCid(ev.cid);
      if (!cid) return;
      state.convs.delete(cid);
      state.inbox.cids.delete(cid);
      if (state.search) state.search.cids.delete(cid);
      state.pending.delete(cid);
      state.drafts.delete(cid);
      for (const item of state.files.get(cid) || []) if (item.xhr) item.xhr.abort();
      state.files.delete(cid);
      if (state.openCid === cid) {
        state.notice = t('erased', { cid, by: String(ev.by || '') });
        navigate(null);
      }
      changed('inbox', 'title', 'header');
    },
  };

  // ---- loading ----

  let inboxSeq = 0;

  /** The inbox for the current filter; `more` fetches the page below the last row. */
  async function loadInbox(more) {
    const inbox = state.inbox;
    const seq = ++inboxSeq;
    const payload = { filter: inbox.filter };
    const labels = visibleCids().map((cid) => state.convs.get(cid).last_message).filter(Boolean).map((m) => m.label);
    if (more && labels.length) payload.before = Math.min(...labels);
    inbox.loading = true;
    inbox.error = '';
    changed('inbox');
    try {
      const data = (await request('inbox:servadm', payload)) || {};
      if (seq !== inboxSeq) return;
      if (!more) inbox.cids.clear();
      for (const raw of data.conversations || []) {
        const conv = mergeConv(raw);
        if (conv) inbox.cids.add(conv.cid);
      }
      inbox.hasMore = Boolean(data.has_more);
    } catch (e) {
      if (seq === inboxSeq) inbox.error = e.message;
    } finally {
      if (seq === inboxSeq) {
        inbox.loading = false;
        changed('inbox', 'title', 'conversation');
        markRead();
      }
    }
  }

  async function loadOnline() {
    try {
      const data = (await request('online:servadm', {})) || {};
      state.online = new Set((data.visitors || []).map(toCid).filter(Boolean));
      state.admins = (data.admins || []).filter((a) => typeof a === 'string');
      for (const conv of state.convs.values()) conv.online = state.online.has(conv.cid);
      changed('header', 'online', 'inbox', 'conversation');
    } catch (_) { /* the online and offline events keep the list anyway */ }
  }

  /** The open conversation, its newest page of history and its notes (again after a reconnect). */
  async function loadThread(thread) {
    const cid = thread.cid;
    const [conv, history, notes] = await Promise.allSettled([
      request('conversation:servadm', { username: cid }),
      request('history:servadm', { username: cid }),
      request('notes:servadm', { username: cid }),
    ]);
    if (state.thread !== thread) return;
    thread.error = '';
    if (conv.status === 'fulfilled') mergeConv(conv.value);
    else thread.error = conv.reason.message;
    if (history.status === 'fulfilled') {
      const data = history.value || {};
      const page = (data.messages || []).map(normMessage).filter(Boolean);
      const newestKnown = thread.labels[thread.labels.length - 1] || 0;
      if (data.has_more && newestKnown && page.every((m) => m.label > newestKnown)) {
        // More came while we were away than a page holds: start again from the newest page
        // rather than show a gap.
        thread.messages.clear();
        thread.labels = [];
        thread.scroll = 'end';
      }
      if (!thread.loaded || !thread.labels.length) thread.hasMore = Boolean(data.has_more);
      for (const m of page) addMessage(thread, m);
      thread.loaded = true;
    } else {
      thread.error = history.reason.message;
    }
    if (notes.status === 'fulfilled') {
      for (const note of (notes.value && notes.value.notes) || []) addNote(note);
      thread.notesLoaded = true;
    }
    markRead();
    changed('conversation', 'messages', 'notes', 'visitor', 'inbox', 'title');
  }

  /** Infinite scroll: the page of history before the oldest message shown. */
  async function loadOlder() {
    const thread = state.thread;
    if (!thread || !thread.hasMore || thread.loadingOlder || !thread.labels.length || !connected()) return;
    thread.loadingOlder = true;
    changed('messages');
    try {
      const data = (await request('history:servadm', { username: thread.cid, before: thread.labels[0] })) || {};
      if (state.thread !== thread) return;
      for (const m of (data.messages || []).map(normMessage).filter(Boolean)) addMessage(thread, m);
      thread.hasMore = Boolean(data.has_more);
    } catch (e) {
      thread.error = e.message;
      changed('conversation');
    } finally {
      thread.loadingOlder = false;
      changed('messages');
    }
  }

  /** Tells the server support has seen the open conversation: when it shows new visitor
   *  messages in a visible tab. */
  function markRead() {
    const thread = state.thread;
    const conv = thread && state.convs.get(thread.cid);
    if (!conv || document.hidden || !thread.labels.length || !connected()) return;
    const newestVisitor = [...thread.labels].reverse().find((l) => thread.messages.get(l).fromVisitor) || 0;
    const readUpTo = Math.max(thread.readSent, Number(conv.support_read_up_to) || 0);
    if (newestVisitor <= readUpTo && !conv.unread_by_support) return;
    const mid = thread.labels[thread.labels.length - 1];
    thread.readSent = mid;
    conv.unread_by_support = 0;
    changed('inbox', 'title');
    request('read:servadm', { username: thread.cid, mid }).then((data) => {
      conv.support_read_up_to = Number(data && data.support_read_up_to) || mid;
      conv.visitor_read_up_to = Math.max(Number(conv.visitor_read_up_to) || 0, Number(data && data.visitor_read_up_to) || 0);
      changed('messages');
    }, () => {
      if (thread.readSent === mid) thread.readSent = 0; // told again at the next chance
    });
  }

  // ---- attention: notifications and sound (the title is a render region) ----

  let audio = null;

  /** An AudioContext may only start in a user's gesture: made in one, resumed in the next. */
  function unlockAudio() {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!state.notify || !Context) return;
    if (!audio) audio = new Context();
    if (audio.state === 'suspended') audio.resume().catch(() => {});
  }

  /** Two short soft tones, synthesised: no audio file to fetch (or to allow in the CSP). */
  function chime() {
    if (!audio || audio.state !== 'running') return;
    const start = audio.currentTime;
    for (const [frequency, at] of [[880, 0], [1318.5, 0.13]]) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = frequency;
      gain.gain.setValueAtTime(0.0001, start + at);
      gain.gain.exponentialRampToValueAtTime(0.18, start + at + 0.015);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + at + 0.22);
      osc.connect(gain).connect(audio.destination);
      osc.start(start + at);
      osc.stop(start + at + 0.25);
    }
  }

  /** A visitor wrote where support is not looking: a notification and a sound, if opted in. */
  function attention(conv, m, isNew) {
    if (!state.notify) return;
    chime();
    if (!('Notification' in window) || Notification.permission !== 'granted') return;
    try {
      const n = new Notification(t(isNew ? 'notify.new' : 'notify.title', { name: visitorName(conv) }), {
        body: Array.from(previewText(m)).slice(0, 200).join(''), tag: `socketgram-${conv.cid}`,
      });
      n.onclick = () => {
        window.focus();
        navigate(conv.cid);
        n.close();
      };
    } catch (_) { /* some mobile browsers notify from a service worker only: the sound played */ }
  }

  function setNotify(on) {
    state.notify = on;
    local.set(NOTIFY_KEY, on ? '1' : null);
    if (on) {
      unlockAudio();
      // Asked within the click that turned it on: browsers only ask the user then.
      if ('Notification' in window && Notification.permission === 'default') {
        Notification.requestPermission().then(() => changed('header'), () => {});
      }
      setTimeout(chime, 50); // what it will sound like
    }
    changed('header');
  }

  // ---- the session ----

  let expiryTimer = null;

  /** Asks the server who is signed in and shows what follows: the app, or the sign-in or
   *  first-run screen. Resolves true when signed in. */
  async function checkSession() {
    let answer;
    try {
      answer = await api('GET', 'session');
    } catch (e) {
      if (state.screen === 'app') return true; // a network blip: the socket reconnects by itself
      Object.assign(state, { screen: 'loading', loadError: e.message });
      changed('screen');
      return false;
    }
    if (answer.status === 200 && answer.body && answer.body.admin) {
      startApp(answer.body);
      return true;
    }
    if (answer.status === 401 && answer.body) showAuth(answer.body);
    else Object.assign(state, { screen: 'loading', loadError: serverText(answer.body && answer.body.error) });
    changed('screen');
    return false;
  }

  function showAuth(body) {
    const wasApp = state.screen === 'app';
    stopApp();
    const error = body.error || {};
    const plain = !body.error || (error.code === 'unauthenticated' && /^not signed in\.?$/i.test(error.message || ''));
    state.screen = 'auth';
    state.links = body.links || null;
    Object.assign(state.auth, {
      firstRun: body.first_run === true,
      commands: (body.first_run_commands || []).filter((c) => typeof c === 'string'),
      notice: plain ? '' : serverText(error, 'session'),
      error: '',
      busy: false,
    });
    changed('screen', 'auth');
    queueMicrotask(() => {
      const idle = !document.activeElement || document.activeElement === document.body;
      if (!state.auth.firstRun && (wasApp || idle)) els.login.focus();
    });
  }

  function startApp(session) {
    const first = state.screen !== 'app';
    Object.assign(state, { session, links: session.links || null, screen: 'app' });
    clearTimeout(expiryTimer);
    const ms = Number(session.expires_at_ms) - Date.now();
    // When the session ends, show the sign-in form rather than wait for a refused request.
    if (Number.isFinite(ms)) expiryTimer = setTimeout(checkSession, Math.min(Math.max(ms, 0) + 1000, 2 ** 31 - 1));
    if (first) {
      const route = parseRoute();
      state.inbox.filter = route.filter;
      if (route.cid) openConversation(route.cid);
    }
    // Again signed in after the socket was refused: reconnect after a pause, so a server
    // that keeps refusing the socket while the session stands is not asked in a busy loop.
    if (first) connect();
    else if (!socket) retryTimer = setTimeout(connect, 3000);
    changed(...RENDER_ORDER);
  }

  /** Forgets all of the signed-in admin's data (before the sign-in form shows). */
  function stopApp() {
    disconnect();
    clearTimeout(expiryTimer);
    clearTimeout(searchTimer);
    stopTyping();
    if (state.thread) for (const key of [...state.thread.typing.keys()]) dropTyping(state.thread, key);
    clearFiles();
    Object.assign(state, {
      session: null, connection: 'connecting', convs: new Map(), search: null, online: new Set(),
      admins: [], openCid: null, thread: null, pending: new Map(), drafts: new Map(), editing: null,
      canned: null, notice: '', error: '', replyError: '',
      inbox: { filter: state.inbox.filter, cids: new Set(), hasMore: false, loading: false, error: '' },
    });
    els.search.value = '';
    els.reply.value = '';
    toggleSettings(false);
    changed(...RENDER_ORDER);
  }

  async function signIn(event) {
    event.preventDefault();
    const login = els.login.value.trim();
    const password = els.password.value;
    if (!login || !password) {
      state.auth.error = t('signIn.missing');
      changed('auth');
      (login ? els.password : els.login).focus();
      return;
    }
    Object.assign(state.auth, { busy: true, error: '' });
    changed('auth');
    let answer;
    try {
      answer = await api('POST', 'sign-in', { login, password });
    } catch (e) {
      answer = { status: 0, body: { error: e } };
    }
    state.auth.busy = false;
    els.password.value = '';
    if (answer.status === 200 && answer.body && answer.body.admin) {
      state.auth.notice = '';
      startApp(answer.body);
      return;
    }
    const body = answer.body || {};
    state.auth.error = serverText(Object.assign({}, body.error, { n: body.retry_after_secs }), 'signIn');
    changed('auth');
    els.password.focus(); // the login stays as typed; the password is what to type again
  }

  async function signOut(everywhere) {
    let answer;
    try {
      answer = await api('POST', everywhere ? 'sign-out-everywhere' : 'sign-out');
    } catch (e) {
      answer = { status: 0, body: { error: e } };
    }
    if ([200, 204, 401].includes(answer.status)) {
      stopApp();
      await checkSession();
      return;
    }
    state.error = serverText(answer.body && answer.body.error);
    changed('header');
  }

  // ---- the URL: #/c/<cid>?filter=<filter>, so a reload keeps both ----

  function parseRoute() {
    const m = /^#\/(?:c\/(\d+))?\/?(?:\?(.*))?$/.exec(location.hash);
    const filter = m && new URLSearchParams(m[2] || '').get('filter');
    return { cid: m && m[1] ? toCid(m[1]) : null, filter: FILTERS.includes(filter) ? filter : 'all' };
  }

  /** Goes to a conversation (null: none) and a filter, through the URL. */
  function navigate(cid, filter) {
    const f = filter || state.inbox.filter;
    const hash = `#/${cid ? `c/${cid}` : ''}${f !== 'all' ? `?filter=${f}` : ''}`;
    if (location.hash === hash) applyRoute();
    else location.hash = hash; // hashchange calls applyRoute
  }

  function applyRoute() {
    if (state.screen !== 'app') return;
    const route = parseRoute();
    if (route.filter !== state.inbox.filter) {
      Object.assign(state.inbox, { filter: route.filter, cids: new Set(), hasMore: false });
      if (connected()) loadInbox(false);
      changed('filters', 'inbox');
    }
    if (route.cid !== state.openCid) openConversation(route.cid);
  }

  function openConversation(cid) {
    const previous = state.openCid;
    if (previous) state.drafts.set(previous, els.reply.value);
    stopTyping();
    if (state.thread) for (const key of [...state.thread.typing.keys()]) dropTyping(state.thread, key);
    Object.assign(state, { openCid: cid, thread: cid ? newThread(cid) : null, canned: null, replyError: '' });
    if (cid) state.notice = ''; // "erased" was about the conversation left
    els.reply.value = (cid && state.drafts.get(cid)) || '';
    if (cid && connected()) loadThread(state.thread);
    changed('header', ...RENDER_ORDER.slice(4));
    queueMicrotask(() => {
      if (!NARROW.matches) return;
      // One pane at a time: the focus goes to the pane that just came.
      if (cid) els.convTitle.focus();
      else if (previous) (rowEls.has(previous) ? rowEls.get(previous).button : els.search).focus();
    });
  }

  // ---- rendering: one function per region ----

  const els = {};
  /** The open thread's message elements by label (dropped when another thread opens). */
  const threadEls = new Map();
  let renderedThread = null;
  const seenEl = h('p', { class: 'seen' });
  /** The inbox's rows by cid, kept across renders: focus stays on a row's button. */
  const rowEls = new Map();
  /** The typing lines by who types, updated in place: the live region does not repeat them. */
  const typingEls = new Map();
  /** The tray's chips by file key. */
  const fileEls = new Map();

  const RENDER = {
    screen() {
      els.loading.hidden = state.screen !== 'loading';
      els.loadingText.textContent = state.loadError || t('loading');
      els.loadingRetry.hidden = !state.loadError;
      els.auth.hidden = state.screen !== 'auth';
      els.app.hidden = state.screen !== 'app';
    },

    auth() {
      const a = state.auth;
      els.signIn.hidden = a.firstRun;
      els.firstRun.hidden = !a.firstRun;
      els.signInError.textContent = a.error || a.notice;
      els.signInError.classList.toggle('is-notice', !a.error);
      els.signInSubmit.disabled = a.busy;
      els.signInSubmit.textContent = t(a.busy ? 'signIn.busy' : 'signIn.submit');
      refill(els.commands, a.commands.join('\n'), () => a.commands.map((command, i) => {
        const copy = h('button', { type: 'button', class: 'secondary', 'aria-describedby': `command-${i}` }, t('copy'));
        copy.addEventListener('click', () => copyCommand(command, i));
        return h('div', { class: 'command' }, h('pre', {}, h('code', { id: `command-${i}` }, command)), copy);
      }));
      els.copyStatus.textContent = a.copyStatus;
      renderLinks(els.authLinks);
      els.authLang.value = lang;
    },

    header() {
      const admin = me();
      refill(els.me, admin.display_name, () => [h('span', { class: 'vh' }, `${t('signedInAs')} `),
        String(admin.display_name || admin.name || admin.login || '')]);
      els.onlineCount.textContent = t('visitorsOnline', { n: state.online.size });
      els.connection.hidden = state.connection === 'online';
      els.connection.textContent = state.connection === 'online' ? '' : t(`conn.${state.connection}`);
      renderLinks(els.appLinks);
      els.lang.value = lang;
      els.notify.checked = state.notify;
      let hint = '';
      if (state.notify && (!('Notification' in window) || !window.isSecureContext)) hint = t('notify.unsupported');
      else if (state.notify) hint = t(Notification.permission === 'denied' ? 'notify.denied' : 'notify.on');
      els.notifyHint.textContent = hint;
      els.notice.textContent = state.notice;
      els.appError.textContent = state.error;
    },

    title() {
      let unread = 0;
      for (const conv of state.convs.values()) unread += Number(conv.unread_by_support) || 0;
      const title = unread > 0 ? `(${unread}) Socketgram` : 'Socketgram';
      if (document.title !== title) document.title = title;
    },

    filters() {
      for (const button of els.filters.querySelectorAll('button[data-filter]')) {
        button.setAttribute('aria-pressed', String(!state.search && button.dataset.filter === state.inbox.filter));
      }
    },

    online() {
      const cids = [...state.online].reverse(); // the newest arrivals first
      refill(els.onlineList, cids.join(), () => cids.map((cid) => {
        const button = h('button', { type: 'button', class: 'chip-button', 'data-cid': cid, 'aria-label': t('visitor', { cid }) }, String(cid));
        button.addEventListener('click', () => navigate(cid));
        return h('li', {}, button);
      }));
      for (const button of els.onlineList.querySelectorAll('button')) {
        if (Number(button.dataset.cid) === state.openCid) button.setAttribute('aria-current', 'true');
        else button.removeAttribute('aria-current');
      }
      els.onlineEmpty.textContent = cids.length ? '' : t('onlineNow.none');
      const others = state.admins.filter((a) => a !== me().login);
      els.teamOnline.hidden = !others.length;
      els.teamOnline.textContent = t('teamOnline', { list: others.join(', ') });
    },

    inbox() {
      const cids = visibleCids();
      const search = state.search;
      const source = search || state.inbox;
      let status = source.error;
      if (!status && !cids.length) {
        if (source.loading) status = t(search ? 'inbox.searching' : 'inbox.loading');
        else status = search ? t('inbox.noResults', { q: search.query }) : t('inbox.empty');
      }
      els.inboxStatus.textContent = status;
      els.inboxStatus.classList.toggle('is-error', Boolean(source.error));
      const focused = els.inbox.contains(document.activeElement) ? document.activeElement : null;
      for (const [cid, row] of rowEls) {
        if (cids.includes(cid)) continue;
        row.li.remove();
        rowEls.delete(cid);
      }
      cids.forEach((cid, i) => {
        let row = rowEls.get(cid);
        if (!row) {
          const button = h('button', { type: 'button', class: 'row-open' });
          button.addEventListener('click', () => navigate(cid));
          row = { li: h('li', { role: 'listitem', class: 'row', 'data-cid': cid }, button), button };
          rowEls.set(cid, row);
        }
        fillRow(row, state.convs.get(cid));
        // Only rows out of place move (a moved element loses the focus: given back below).
        if (els.inbox.children[i] !== row.li) els.inbox.insertBefore(row.li, els.inbox.children[i] || null);
      });
      if (focused && focused.isConnected && document.activeElement !== focused) focused.focus({ preventScroll: true });
      els.inboxMore.hidden = Boolean(search) || !state.inbox.hasMore;
      els.inboxMore.disabled = state.inbox.loading;
    },

    conversation() {
      els.app.dataset.view = state.openCid ? 'conversation' : 'inbox';
      els.convEmpty.hidden = Boolean(state.openCid);
      els.convView.hidden = !state.openCid;
      if (!state.openCid) return;
      const c = state.convs.get(state.openCid) || { cid: state.openCid, status: 'open' };
      const online = isOnline(c.cid);
      const busy = Boolean(state.thread && state.thread.busy);
      els.convTitle.textContent = visitorName(c);
      refill(els.convMeta, [c.channel, online, statusText(c), c.status].join(), () => [
        h('span', { class: 'chip' }, t(c.channel === 'telegram' ? 'channel.telegram' : 'channel.web')),
        h('span', { class: `presence${online ? ' is-online' : ''}` },
          h('span', { class: 'dot', 'aria-hidden': 'true' }), t(online ? 'online' : 'offline')),
        h('span', { class: `chip status-${c.status}` }, statusText(c))]);
      const mine = Boolean(c.assignee) && c.assignee === me().login;
      els.assignee.textContent = !c.assignee ? t('assignee.nobody') : mine ? t('assignee.me') : t('assignee.other', { login: c.assignee });
      els.take.hidden = mine;
      els.unassign.hidden = !mine;
      els.take.disabled = els.unassign.disabled = busy;
      // open: Pending, Resolve; pending or snoozed: Open, Resolve; resolved: Reopen.
      const buttons = c.status === 'resolved' ? [['open', 'set.reopen']]
        : [c.status === 'pending' || c.status === 'snoozed' ? ['open', 'set.open'] : ['pending', 'set.pending'], ['resolved', 'set.resolved']];
      refill(els.statusButtons, buttons.join(), () => buttons.map(([status, key]) => {
        const b = h('button', { type: 'button', class: status === 'resolved' ? 'primary' : 'secondary', 'data-status': status }, t(key));
        b.addEventListener('click', () => setStatus(status));
        return b;
      }));
      for (const b of els.statusButtons.children) b.disabled = busy;
      els.convError.textContent = (state.thread && state.thread.error) || '';
    },

    messages() {
      const thread = state.thread;
      const log = els.messages;
      if (renderedThread !== thread) {
        threadEls.clear(); // another conversation: its elements start afresh
        els.msgList.replaceChildren();
        renderedThread = thread;
      }
      if (!thread) return;
      const conv = state.convs.get(thread.cid);
      const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 60;
      // The first message shown before stays where it is when older ones go above it.
      const anchor = els.msgList.firstElementChild;
      const anchorTop = anchor ? anchor.offsetTop : 0;
      const lastBefore = els.msgList.lastElementChild;
      let next = els.msgList.firstElementChild;
      for (const label of thread.labels) {
        let el = threadEls.get(label);
        if (!el) threadEls.set(label, el = messageElement(thread.messages.get(label), conv));
        if (el === next) next = next.nextElementSibling;
        else els.msgList.insertBefore(el, next);
      }
      // "Seen": under the newest support message the visitor has read.
      const readUpTo = Number(conv && conv.visitor_read_up_to) || 0;
      const seenLabel = [...thread.labels].reverse().find((l) => l <= readUpTo && !thread.messages.get(l).fromVisitor);
      seenEl.textContent = t('seen');
      if (seenLabel) threadEls.get(seenLabel).append(seenEl);
      else seenEl.remove();
      const items = (state.pending.get(thread.cid) || []).filter((item) => !item.matched);
      refill(els.pendingList, items.map((i) => `${i.id}:${i.state}:${i.error}`).join(),
        () => items.map((item) => pendingElement(thread.cid, item)));
      els.older.textContent = thread.loadingOlder ? t('messages.older')
        : thread.loaded && !thread.hasMore && thread.labels.length ? t('messages.start') : '';
      log.setAttribute('aria-busy', String(!thread.loaded || thread.loadingOlder));
      els.msgEmpty.hidden = !thread.loaded || thread.labels.length > 0 || items.length > 0;
      els.msgEmpty.textContent = t('messages.none');
      if (thread.scroll === 'end' || (atBottom && els.msgList.lastElementChild !== lastBefore)) {
        log.scrollTop = log.scrollHeight;
      } else if (anchor && anchor.isConnected) {
        log.scrollTop += anchor.offsetTop - anchorTop;
      }
      if (thread.loaded) thread.scroll = null;
      // A first page shorter than the pane leaves nothing to scroll: fetch more at once.
      if (thread.hasMore && log.clientHeight > 0 && log.scrollHeight <= log.clientHeight + 8) loadOlder();
    },

    typing() {
      const entries = state.thread ? state.thread.typing : new Map();
      for (const [key, el] of typingEls) {
        if (entries.has(key)) continue;
        el.line.remove();
        typingEls.delete(key);
      }
      for (const [key, entry] of entries) {
        let el = typingEls.get(key);
        if (!el) {
          // The draft is a glimpse only: kept out of the live region, which would read every change.
          el = { text: h('span', {}), preview: h('span', { class: 'typing-preview', 'aria-hidden': 'true' }) };
          el.line = h('span', { class: 'typing-line' }, el.text, el.preview);
          typingEls.set(key, el);
          els.typing.append(el.line);
        }
        const text = entry.visitor ? t('typing.visitor') : entry.name ? t('typing.named', { name: entry.name }) : t('typing.colleague');
        if (el.text.textContent !== text) el.text.textContent = text;
        const preview = entry.preview ? ` ${entry.preview}` : '';
        if (el.preview.textContent !== preview) el.preview.textContent = preview;
      }
    },

    reply() {
      els.replyError.textContent = state.replyError;
      els.send.disabled = !canSend();
      const uploading = (state.files.get(state.openCid) || []).some((f) => f.state === 'uploading');
      els.replyHint.textContent = t(uploading ? 'files.busy' : 'reply.hint');
    },

    /** The open conversation's chosen files, above the reply box: each chip built once (per
     *  language) and updated in place, so a focused button keeps the focus. */
    files() {
      const files = state.files.get(state.openCid) || [];
      for (const [key, view] of fileEls) {
        if (files.some((f) => f.key === key) && view.lang === lang) continue;
        view.li.remove();
        fileEls.delete(key);
      }
      files.forEach((item, i) => {
        let view = fileEls.get(item.key);
        if (!view) fileEls.set(item.key, view = fileChip(item));
        if (els.replyFiles.children[i] !== view.li) els.replyFiles.insertBefore(view.li, els.replyFiles.children[i] || null);
        view.li.dataset.state = item.state;
        view.li.classList.toggle('is-failed', item.state === 'failed');
        view.progress.hidden = item.state !== 'uploading';
        view.progress.value = Math.round(item.progress * 100);
        view.error.textContent = item.error;
        view.error.hidden = !item.error;
        view.retry.hidden = !(item.state === 'failed' && item.retry && item.file);
      });
      els.replyFiles.hidden = !files.length;
    },

    canned() {
      const canned = state.canned;
      els.canned.hidden = !canned;
      if (!canned) {
        els.reply.removeAttribute('aria-activedescendant');
        els.canned.replaceChildren();
        return;
      }
      els.canned.replaceChildren(...canned.items.map((item, i) => {
        const option = h('li', { role: 'option', id: `canned-${i}`, 'aria-selected': String(i === canned.active), class: i === canned.active ? 'is-active' : null },
          h('span', { class: 'canned-key' }, `/${item.shortcut}`), h('span', { class: 'canned-text' }, item.text));
        option.addEventListener('mousedown', (e) => {
          e.preventDefault(); // the reply box keeps the focus
          pickCanned(i);
        });
        return option;
      }));
      els.reply.setAttribute('aria-activedescendant', `canned-${canned.active}`);
      els.canned.children[canned.active].scrollIntoView({ block: 'nearest' });
    },

    notes() {
      const thread = state.thread;
      const notes = thread ? thread.notes : [];
      refill(els.notes, `${thread && thread.cid}:${notes.map((n) => n.id).join()}`, () => notes.map((n) => h('li', { class: 'note' },
        h('p', { class: 'note-meta' }, h('span', { class: 'note-tag' }, t('notes.private')), ' ',
          h('span', { class: 'note-author' }, String(n.admin || '')), ' ',
          h('time', { datetime: new Date(Number(n.created_at_ms) || 0).toISOString() }, formatMs(n.created_at_ms))),
        h('p', { class: 'note-text' }, String(n.text || '')))));
      els.notesEmpty.textContent = !notes.length && thread && thread.notesLoaded ? t('notes.none') : '';
      els.notesCount.textContent = notes.length ? ` (${notes.length})` : '';
    },

    visitor() {
      const conv = state.openCid && state.convs.get(state.openCid);
      const context = (conv && conv.context) || {};
      const verified = context.verified || {};
      const page = context.page || {};
      const rows = [[t('field.id'), String(state.openCid || ''), '']];
      const add = (label, value, source) => value !== undefined && value !== null && value !== '' && rows.push([label, String(value), source]);
      add(t('field.name'), verified.name, 'verified');
      add(t('field.email'), verified.email, 'verified');
      for (const [k, v] of Object.entries(verified.fields || {})) add(k, v, 'verified');
      add(t('field.url'), page.url, 'reported');
      add(t('field.title'), page.title, 'reported');
      add(t('field.language'), page.language, 'reported');
      add(t('field.timeZone'), page.time_zone, 'reported');
      refill(els.visitorInfo, JSON.stringify([rows, context.updated_at_ms]), () => [
        h('dl', { class: 'facts' }, rows.map(([label, value, source]) => h('div', { class: `fact${source ? ` is-${source}` : ''}` },
          h('dt', {}, label),
          h('dd', {}, h('span', { class: 'fact-value' }, value), source ? h('span', { class: 'fact-source' }, t(source)) : null)))),
        rows.length === 1 ? h('p', { class: 'hint' }, t('context.none')) : null,
        context.updated_at_ms ? h('p', { class: 'hint' }, t('context.updated', { time: formatMs(context.updated_at_ms) })) : null]);
    },
  };

  function statusText(conv) {
    if (conv.status === 'snoozed' && conv.snoozed_until_ms) return t('status.snoozedUntil', { time: formatMs(conv.snoozed_until_ms) });
    return t(`status.${['open', 'pending', 'resolved', 'snoozed'].includes(conv.status) ? conv.status : 'open'}`);
  }

  /** An inbox row's content: name, presence, time, last message, status, assignee, unread. */
  function fillRow(row, conv) {
    const last = conv.last_message;
    const unread = Number(conv.unread_by_support) || 0;
    const online = isOnline(conv.cid);
    let preview = t('inbox.noMessage');
    if (last) {
      const text = Array.from(previewText(last)).slice(0, 200).join('').replace(/\s+/g, ' ');
      preview = last.fromVisitor ? text : `${last.author === me().login ? t('you') : last.adm}: ${text}`;
    }
    const assignee = !conv.assignee ? t('assignee.nobody') : conv.assignee === me().login ? t('you') : conv.assignee;
    const open = conv.cid === state.openCid;
    row.li.classList.toggle('is-unread', unread > 0);
    row.li.classList.toggle('is-open', open);
    if (open) row.button.setAttribute('aria-current', 'true');
    else row.button.removeAttribute('aria-current');
    refill(row.button, JSON.stringify([visitorName(conv), online, last && last.label, preview, statusText(conv), conv.status, assignee, unread]), () => [
      h('span', { class: 'row-line' },
        h('span', { class: `dot${online ? ' is-online' : ''}`, 'aria-hidden': 'true' }),
        h('span', { class: 'row-name' }, visitorName(conv)),
        h('span', { class: 'vh' }, `, ${t(online ? 'online' : 'offline')}, `),
        last ? timeEl(last.date, 'row-time') : null),
      h('span', { class: 'row-text' }, preview),
      h('span', { class: 'row-line row-meta' },
        h('span', { class: `chip status-${conv.status}` }, statusText(conv)),
        h('span', { class: 'row-assignee' }, h('span', { class: 'vh' }, `${t('assignee')} `), assignee),
        unread ? h('span', { class: 'badge', role: 'img', 'aria-label': t('unread', { n: unread }) }, String(unread)) : null)]);
  }

  function messageElement(m, conv) {
    return h('div', { class: `msg ${m.fromVisitor ? 'from-visitor' : 'from-support'}`, 'data-label': m.label },
      h('p', { class: 'msg-meta' },
        m.fromVisitor ? h('span', { class: 'vh' }, `${visitorName(conv)} `) : h('span', { class: 'msg-author' }, m.adm),
        timeEl(m.date)),
      m.attachments.length ? filesElement(m.attachments) : null,
      // Files alone make no empty bubble.
      m.text || !m.attachments.length ? h('p', { class: 'msg-text' }, m.text) : null);
  }

  /** A message's files: an image with a thumbnail as that thumbnail, linked to the file (in
   *  a new tab); anything else as a chip with its name and size, to download. */
  function filesElement(list) {
    return h('div', { class: 'msg-files' }, list.map((a) => {
      if (a.url && a.thumbUrl) {
        return h('a', { class: 'msg-thumb', href: a.url, target: '_blank', rel: 'noopener' },
          h('img', Object.assign({ src: a.thumbUrl, alt: a.name, loading: 'lazy', decoding: 'async' }, thumbSize(a.width, a.height))));
      }
      const parts = [fileIcon(), h('span', { class: 'file-name' }, a.name), h('span', { class: 'file-size' }, humanSize(a.size))];
      return a.url
        ? h('a', { class: 'msg-file', href: a.url, download: a.name, target: '_blank', rel: 'noopener' }, parts)
        : h('span', { class: 'msg-file' }, parts);
    }));
  }

  /** A document outline, drawn in the text's colour. */
  function fileIcon() {
    const ns = 'http://www.w3.org/2000/svg';
    const icon = document.createElementNS(ns, 'svg');
    icon.setAttribute('viewBox', '0 0 24 24');
    icon.setAttribute('aria-hidden', 'true');
    icon.setAttribute('focusable', 'false');
    icon.setAttribute('class', 'file-icon');
    const path = document.createElementNS(ns, 'path');
    path.setAttribute('d', 'M14 3H7a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h10a2 2 0 0 0 2-2V8zM14 3v5h5');
    icon.append(path);
    return icon;
  }

  /** A chosen file's chip: name, size, a progress bar while it uploads, why it was refused,
   *  "Try again" after a failure that may pass later, and a remove button. */
  function fileChip(item) {
    const name = item.name;
    const view = { lang };
    view.progress = h('progress', { max: '100', value: '0', 'aria-label': t('files.uploading', { name }) });
    view.error = h('p', { class: 'file-error', hidden: true });
    view.retry = h('button', { type: 'button', class: 'link', 'aria-label': t('files.retry', { name }), hidden: true }, t('retry'));
    view.retry.addEventListener('click', () => {
      uploadFile(item);
      els.reply.focus();
    });
    view.remove = h('button', { type: 'button', class: 'file-remove', 'aria-label': t('files.remove', { name }) }, h('span', { 'aria-hidden': 'true' }, '×'));
    view.remove.addEventListener('click', () => removeFile(item, true));
    view.li = h('li', { class: 'file-chip' }, fileIcon(), h('span', { class: 'file-name' }, name),
      h('span', { class: 'file-size' }, humanSize(item.size)), view.retry, view.remove, view.progress, view.error);
    return view;
  }

  /** A reply not stored yet: "Sending…", or "Not sent" with Try again (same id) and Edit. */
  function pendingElement(cid, item) {
    const status = h('p', { class: 'msg-status' });
    if (item.state === 'failed') {
      const retry = h('button', { type: 'button', class: 'link' }, t('retry'));
      retry.addEventListener('click', () => {
        sendItem(cid, item);
        els.reply.focus();
      });
      const edit = h('button', { type: 'button', class: 'link' }, t('edit'));
      edit.addEventListener('click', () => editPending(cid, item));
      status.append(t('notSent', { reason: item.error }), ' ', retry, ' ', edit);
    } else {
      status.append(t(item.state === 'queued' ? 'waiting' : 'sending'));
    }
    return h('div', { class: `msg from-support pending${item.state === 'failed' ? ' is-failed' : ''}` },
      item.attachments.length ? filesElement(item.attachments) : null,
      item.text || !item.attachments.length ? h('p', { class: 'msg-text' }, item.text) : null, status);
  }

  function renderLinks(container) {
    const links = state.links || {};
    const list = [[localPath(links.try), 'links.try'], [localPath(links.demo), 'links.demo'],
      [localPath(links.health), 'links.health']].filter(([href]) => href);
    // The test visitor opens beside the console: the two are meant to be seen side by side.
    refill(container, list.join(), () => list.map(([href, key]) =>
      h('a', key === 'links.try' ? { href, target: '_blank', rel: 'noopener' } : { href }, t(key))));
    container.hidden = !list.length;
  }

  // ---- actions ----

  /** A request that changes the open conversation; its answer is the Conversation. */
  async function convAction(name, payload) {
    const thread = state.thread;
    if (!thread) return;
    Object.assign(thread, { busy: true, error: '' });
    changed('conversation');
    try {
      mergeConv(await request(name, Object.assign({ username: thread.cid }, payload)));
    } catch (e) {
      thread.error = e.message;
    } finally {
      thread.busy = false;
      changed('conversation', 'inbox');
    }
  }

  function take() {
    const conv = state.convs.get(state.openCid);
    // take: true is refused when someone has it: taking it over from them names oneself.
    convAction('assign:servadm', conv && conv.assignee && conv.assignee !== me().login ? { assignee: me().login } : { take: true });
  }

  const setStatus = (status) => convAction('status:servadm', { status });

  /** Whether the open conversation's reply can go now: it has text or uploaded files, and no
   *  file is still uploading. Send waits for uploads rather than sending without them: the
   *  reply carries its files' ids, which exist only once their uploads are done. */
  function canSend() {
    const files = state.files.get(state.openCid) || [];
    if (!state.openCid || files.some((f) => f.state === 'uploading')) return false;
    return Boolean(els.reply.value.trim()) || files.some((f) => f.state === 'done');
  }

  /** Sends what the reply box holds, with its uploaded files, shown as pending until the
   *  server has stored it. */
  function sendReply() {
    const cid = state.openCid;
    if (!canSend()) return;
    const raw = els.reply.value;
    const text = raw.trim() ? raw : '';
    const files = state.files.get(cid) || [];
    const attachments = files.filter((f) => f.state === 'done').map((f) => f.attachment);
    // The same reply sent again after "Edit" is the same reply: it keeps its id, so the server
    // stores it once even if the first try did arrive.
    const editing = state.editing;
    const same = editing && editing.cid === cid && editing.text === text && sameFiles(editing.attachments, attachments);
    const item = { id: same ? editing.id : randomId(), text, attachments, state: 'queued', error: '', matched: false };
    state.pending.set(cid, [...(state.pending.get(cid) || []), item]);
    // The files went with the reply; a refused one stays, saying why, until removed.
    setFiles(cid, files.filter((f) => f.state !== 'done'));
    Object.assign(state, { editing: null, canned: null });
    els.reply.value = '';
    state.drafts.delete(cid);
    stopTyping();
    if (state.thread) state.thread.scroll = 'end';
    if (connected()) sendItem(cid, item);
    changed('messages', 'canned', 'reply', 'files');
  }

  function sendItem(cid, item) {
    Object.assign(item, { state: 'sending', error: '', matched: false });
    state.replyError = '';
    changed('messages', 'reply');
    const payload = { username: cid, message: item.text, client_msg_id: item.id };
    if (item.attachments.length) payload.attachments = item.attachments.map((a) => a.id);
    request('new message:servadm', payload).then((raw) => {
      removePending(cid, item);
      const m = normMessage(raw);
      if (m) receiveMessage(m, false);
    }, (e) => {
      // Lost with the connection: sent again (same id) once connected. Otherwise shown as not
      // sent, its text kept, to try again or edit.
      Object.assign(item, { state: e.code === 'timeout' && !connected() ? 'queued' : 'failed', error: e.message, matched: false });
      if (item.state === 'failed' && state.openCid === cid) state.replyError = t('notSent', { reason: e.message });
      changed('messages', 'reply');
    });
  }

  function removePending(cid, item) {
    const items = (state.pending.get(cid) || []).filter((p) => p !== item);
    if (items.length) state.pending.set(cid, items);
    else state.pending.delete(cid);
    changed('messages');
  }

  /** A reply that was not sent goes back into the reply box (its files into the tray, still
   *  uploaded), to change and send again. */
  function editPending(cid, item) {
    removePending(cid, item);
    els.reply.value = els.reply.value && item.text ? `${item.text}\n${els.reply.value}` : item.text || els.reply.value;
    const back = item.attachments.map((a) => ({
      key: ++fileSeq, cid, file: null, name: a.name, size: a.size, state: 'done', progress: 1, error: '',
      retry: false, xhr: null, attachment: a,
    }));
    setFiles(cid, [...back, ...(state.files.get(cid) || [])]);
    state.editing = { cid, id: item.id, text: els.reply.value, attachments: item.attachments };
    state.replyError = '';
    changed('reply', 'files');
    els.reply.focus();
  }

  // ---- files: uploaded as soon as chosen, then sent with the next reply ----

  let fileSeq = 0;

  function setFiles(cid, files) {
    if (files.length) state.files.set(cid, files);
    else state.files.delete(cid);
  }

  /** Files chosen (the paperclip, a paste, a drop) for the open conversation's next reply. */
  function addFiles(list) {
    const cid = state.openCid;
    if (!cid) return;
    for (const file of Array.from(list || [])) {
      const item = {
        key: ++fileSeq, cid, file, name: file.name || 'file', size: file.size, state: 'uploading', progress: 0,
        error: '', retry: false, xhr: null, attachment: null,
      };
      setFiles(cid, [...(state.files.get(cid) || []), item]);
      const why = refusal(item);
      if (why) failFile(item, why, false);
      else uploadFile(item);
    }
    changed('files', 'reply');
  }

  /** Why `item` cannot go with the reply, by the server's limits as last told; or null (also
   *  before any ticket: the first ticket's answer is checked again). */
  function refusal(item) {
    const name = item.name;
    if (item.size === 0) return t('files.empty', { name });
    if (!state.fileLimits) return null;
    const { maxBytes, maxFiles, types } = state.fileLimits;
    if ((state.files.get(item.cid) || []).filter((f) => f.state !== 'failed').indexOf(item) >= maxFiles) {
      return t('files.tooMany', { name, n: maxFiles });
    }
    if (item.size > maxBytes) return t('files.tooLarge', { name, max: humanSize(maxBytes) });
    if (!typeAccepted(item.file.type, types)) return t('files.type', { name });
    return null;
  }

  const fileLive = (item) => (state.files.get(item.cid) || []).includes(item);

  function failFile(item, text, retry) {
    Object.assign(item, { state: 'failed', error: text, retry, progress: 0 });
    if (item.cid === state.openCid) els.filesStatus.textContent = text;
    changed('files', 'reply');
  }

  /** A ticket (`upload:servadm`), then the bytes. */
  async function uploadFile(item) {
    Object.assign(item, { state: 'uploading', progress: 0, error: '', retry: false });
    changed('files', 'reply');
    let data;
    try {
      data = await request('upload:servadm', { username: item.cid, name: item.name, size: item.size });
    } catch (e) {
      if (fileLive(item)) uploadFailed(item, 0, e);
      return;
    }
    if (!fileLive(item)) return; // removed meanwhile
    readLimits(data || {});
    const why = refusal(item);
    const url = localPath(data && data.url);
    if (why || !url) failFile(item, why || t('files.noUrl', { name: item.name }), false);
    else postFile(item, url);
  }

  function readLimits(data) {
    const maxBytes = Number(data.max_bytes);
    const maxFiles = Number(data.max_files);
    const types = Array.isArray(data.types) ? data.types.filter((type) => typeof type === 'string' && type) : [];
    state.fileLimits = {
      maxBytes: maxBytes > 0 ? maxBytes : Infinity,
      maxFiles: Number.isSafeInteger(maxFiles) && maxFiles > 0 ? maxFiles : Infinity,
      types: types.length ? types : null,
    };
    // The picker offers what the server takes (one may still choose "all files").
    if (state.fileLimits.types) els.fileInput.accept = state.fileLimits.types.join(',');
  }

  /** The file itself, as the body of a POST to the ticket's URL (the ticket is in the URL). */
  function postFile(item, url) {
    const xhr = new XMLHttpRequest();
    item.xhr = xhr;
    xhr.open('POST', url);
    xhr.responseType = 'json';
    xhr.upload.addEventListener('progress', (e) => {
      if (item.xhr !== xhr || !e.lengthComputable || !e.total) return;
      item.progress = e.loaded / e.total;
      changed('files');
    });
    xhr.addEventListener('load', () => {
      if (item.xhr !== xhr) return;
      item.xhr = null;
      const body = xhr.response && typeof xhr.response === 'object' ? xhr.response : {};
      const data = body.data;
      if (xhr.status !== 201 || !data || data.id === undefined || data.id === null) {
        uploadFailed(item, xhr.status, body.error || {});
        return;
      }
      item.attachment = {
        id: data.id,
        name: typeof data.name === 'string' && data.name ? data.name : item.name,
        type: typeof data.type === 'string' ? data.type : '',
        size: Number(data.size) || item.size,
        width: Number(data.width) || 0,
        height: Number(data.height) || 0,
      };
      Object.assign(item, { state: 'done', progress: 1 });
      if (item.cid === state.openCid) els.filesStatus.textContent = t('files.uploaded', { name: item.name });
      changed('files', 'reply');
    });
    xhr.addEventListener('error', () => {
      if (item.xhr !== xhr) return;
      item.xhr = null;
      failFile(item, t('files.network', { name: item.name }), true);
    });
    xhr.send(item.file);
  }

  /** A refused ticket (`status` 0, `error` as request() rejects) or upload: why. */
  function uploadFailed(item, status, error) {
    const name = item.name;
    const code = error.code;
    const limits = state.fileLimits;
    if ((status === 413 || code === 'too_large') && limits && limits.maxBytes < Infinity) {
      failFile(item, t('files.tooLarge', { name, max: humanSize(limits.maxBytes) }), false);
    } else if (status === 415 || code === 'type_not_allowed') {
      failFile(item, t('files.type', { name }), false);
    } else if (status === 401 || status === 403) {
      // The ticket was refused (most likely expired): "Try again" asks for a new one.
      failFile(item, t('files.expired', { name }), true);
    } else {
      // request() has put a ticket's refusal in words already; an upload's is the server's body.
      let reason = error.message;
      if (status) reason = error.code || error.message ? serverText(error, 'upload') : `HTTP ${status}`;
      const transient = status >= 500 || code === 'truncated' || ['timeout', 'unavailable', 'rate_limited', 'internal'].includes(code);
      // The server's words may name the file already ("big.zip is larger than 10 MB").
      failFile(item, String(reason).startsWith(name) ? String(reason) : t('files.refused', { name, reason }), transient);
    }
  }

  function removeFile(item, moveFocus) {
    const files = state.files.get(item.cid) || [];
    const at = files.indexOf(item);
    if (at < 0) return;
    if (item.xhr) {
      const xhr = item.xhr;
      item.xhr = null;
      xhr.abort();
    }
    setFiles(item.cid, files.filter((f) => f !== item));
    changed('files', 'reply');
    if (moveFocus) {
      const next = files[at + 1] || files[at - 1];
      // After the redraw, which this microtask follows.
      queueMicrotask(() => {
        const view = next && fileEls.get(next.key);
        (view ? view.remove : els.reply).focus();
      });
    }
  }

  function clearFiles() {
    for (const files of state.files.values()) {
      for (const item of files) if (item.xhr) item.xhr.abort();
    }
    state.files = new Map();
  }

  const typingOut = { cid: null, sentAt: 0, sentChars: -1, timer: null };

  /** typing:servadm while the reply has text: at most once a second, and only on changes. */
  function tellTyping() {
    const cid = state.openCid;
    if (!cid || !connected()) return;
    const chars = Array.from(els.reply.value).length;
    if (!chars) {
      stopTyping();
      return;
    }
    const wait = typingOut.sentAt + TYPING_EVERY_MS - Date.now();
    if (wait > 0) {
      if (!typingOut.timer) typingOut.timer = setTimeout(() => { typingOut.timer = null; tellTyping(); }, wait);
    } else if (chars !== typingOut.sentChars || typingOut.cid !== cid) {
      Object.assign(typingOut, { cid, sentAt: Date.now(), sentChars: chars });
      request('typing:servadm', { username: cid, chars }).catch(() => {});
    }
  }

  /** chars: 0, once, when the reply is sent or cleared or its conversation left. */
  function stopTyping() {
    clearTimeout(typingOut.timer);
    if (typingOut.cid && typingOut.sentChars > 0 && connected()) {
      request('typing:servadm', { username: typingOut.cid, chars: 0 }).catch(() => {});
    }
    Object.assign(typingOut, { cid: null, sentAt: 0, sentChars: -1, timer: null });
  }

  let cannedSeq = 0;
  let cannedTimer = null;

  /** A reply that is "/prefix" lists the canned replies whose shortcut starts so. */
  function updateCanned() {
    clearTimeout(cannedTimer);
    const m = /^\/(\S*)$/.exec(els.reply.value);
    const seq = ++cannedSeq;
    if (!m || !connected()) {
      closeCanned();
      return;
    }
    cannedTimer = setTimeout(() => request('canned replies:servadm', { prefix: m[1] }).then((data) => {
      if (seq !== cannedSeq) return;
      const items = Object.entries((data && data.replies) || {}).filter(([, text]) => typeof text === 'string')
        .map(([shortcut, text]) => ({ shortcut, text }));
      state.canned = items.length ? { items, active: 0 } : null;
      changed('canned');
    }, () => seq === cannedSeq && closeCanned()), 120);
  }

  function closeCanned() {
    cannedSeq++;
    state.canned = null;
    changed('canned');
  }

  function pickCanned(i) {
    const item = state.canned && state.canned.items[i];
    if (!item) return;
    els.reply.value = item.text;
    els.reply.setSelectionRange(item.text.length, item.text.length);
    closeCanned();
    tellTyping();
    changed('reply');
  }

  async function submitNote(event) {
    event.preventDefault();
    const thread = state.thread;
    const text = els.noteInput.value.trim();
    if (!thread || !text) return;
    els.noteSubmit.disabled = true;
    try {
      addNote(await request('note:servadm', { username: thread.cid, text }));
      els.noteInput.value = '';
      els.noteError.textContent = '';
    } catch (e) {
      els.noteError.textContent = e.message;
    } finally {
      els.noteSubmit.disabled = false;
    }
  }

  let searchTimer = null;

  /** Searches; an empty query goes back to the filtered inbox. `again` repeats the same one. */
  function runSearch(query, again) {
    clearTimeout(searchTimer);
    const q = query.trim();
    if (!q || (!again && state.search && state.search.query === q && !state.search.error)) {
      if (!q && state.search) {
        state.search = null;
        changed('inbox', 'filters');
      }
      return;
    }
    const search = { query: q, cids: new Set(), loading: true, error: '' };
    state.search = search;
    changed('inbox', 'filters');
    request('search:servadm', { query: q }).then((data) => {
      for (const conv of ((data && data.conversations) || []).map(mergeConv)) if (conv) search.cids.add(conv.cid);
    }, (e) => {
      search.error = e.message;
    }).finally(() => {
      search.loading = false;
      changed('inbox', 'title');
    });
  }

  async function copyCommand(command, i) {
    try {
      await navigator.clipboard.writeText(command);
      state.auth.copyStatus = t('copied');
    } catch (_) {
      // No clipboard here (plain HTTP): select the text for the reader to copy.
      const range = document.createRange();
      range.selectNodeContents(document.getElementById(`command-${i}`));
      window.getSelection().removeAllRanges();
      window.getSelection().addRange(range);
      state.auth.copyStatus = t('copy.manual');
    }
    changed('auth');
  }

  function setLang(next) {
    if (!DICT[next]) return;
    lang = next;
    plurals = new Intl.PluralRules(lang);
    local.set(LANG_KEY, lang);
    document.documentElement.lang = lang;
    translateStatic();
    renderedThread = null; // messages say "Visitor 42" to screen readers: build them anew
    changed(...RENDER_ORDER);
  }

  /** The texts written in index.html: data-i18n (text), data-i18n-label, data-i18n-placeholder. */
  function translateStatic() {
    for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
    for (const el of document.querySelectorAll('[data-i18n-label]')) el.setAttribute('aria-label', t(el.dataset.i18nLabel));
    for (const el of document.querySelectorAll('[data-i18n-placeholder]')) el.placeholder = t(el.dataset.i18nPlaceholder);
  }

  function toggleSettings(open) {
    els.settingsPanel.hidden = !open;
    els.settingsButton.setAttribute('aria-expanded', String(open));
  }

  // ---- keyboard ----

  /** j / k: the next / previous conversation of the inbox; u (`unread`): the next with unread. */
  function step(delta, unread) {
    const cids = visibleCids();
    const at = cids.indexOf(state.openCid);
    let target;
    if (unread) {
      const after = [...cids.slice(at + 1), ...cids.slice(0, Math.max(at, 0))];
      target = after.find((cid) => Number(state.convs.get(cid).unread_by_support) > 0);
    } else {
      target = at < 0 ? cids[delta > 0 ? 0 : cids.length - 1] : cids[Math.min(Math.max(at + delta, 0), cids.length - 1)];
    }
    if (!target || target === state.openCid) return;
    const inInbox = els.inbox.contains(document.activeElement);
    navigate(target);
    if (inInbox && rowEls.has(target)) rowEls.get(target).button.focus(); // the focus follows
  }

  function onShortcut(e) {
    if (state.screen !== 'app' || e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey) return;
    if (inTextField(e.target) || els.shortcutsDialog.open) return;
    const actions = {
      j: () => step(1),
      k: () => step(-1),
      u: () => step(1, true),
      r: () => state.openCid && els.reply.focus(),
      e: () => state.openCid && setStatus('resolved'),
      '?': () => els.shortcutsDialog.showModal(),
    };
    if (!actions[e.key]) return;
    e.preventDefault();
    actions[e.key]();
  }

  function onReplyKey(e) {
    const canned = state.canned;
    if (canned && (e.key === 'ArrowDown' || e.key === 'ArrowUp')) {
      canned.active = (canned.active + (e.key === 'ArrowDown' ? 1 : canned.items.length - 1)) % canned.items.length;
      changed('canned');
    } else if (canned && ((e.key === 'Enter' && !e.shiftKey) || e.key === 'Tab')) {
      pickCanned(canned.active);
    } else if (canned && e.key === 'Escape') {
      closeCanned();
    } else if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      sendReply();
    } else if (e.key === 'Escape') {
      els.messages.focus(); // out of the box, to where the keyboard shortcuts work
    } else {
      return;
    }
    e.preventDefault();
  }

  // ---- wiring ----

  function init() {
    for (const el of document.querySelectorAll('[id]')) els[el.id.replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = el;
    const on = (el, type, fn) => el.addEventListener(type, fn);
    document.documentElement.lang = lang;
    translateStatic();
    // The details start open where there is room for them beside the history.
    const openDetails = () => { els.visitorPanel.open = els.notesPanel.open = WIDE.matches; };
    openDetails();
    on(WIDE, 'change', openDetails);

    on(els.signIn, 'submit', signIn);
    on(els.reload, 'click', () => location.reload());
    on(els.loadingRetry, 'click', () => {
      state.loadError = '';
      changed('screen');
      checkSession();
    });
    for (const select of [els.lang, els.authLang]) on(select, 'change', () => setLang(select.value));
    on(els.notify, 'change', () => setNotify(els.notify.checked));
    on(els.settingsButton, 'click', () => toggleSettings(els.settingsPanel.hidden));
    on(els.settingsPanel, 'keydown', (e) => {
      if (e.key !== 'Escape') return;
      toggleSettings(false);
      els.settingsButton.focus();
    });
    on(document, 'click', (e) => !els.settingsPanel.hidden && !els.settings.contains(e.target) && toggleSettings(false));
    on(els.showShortcuts, 'click', () => {
      toggleSettings(false);
      els.shortcutsDialog.showModal();
    });
    on(els.signOut, 'click', () => signOut(false));
    on(els.signOutEverywhere, 'click', () => signOut(true));

    on(els.filters, 'click', (e) => {
      const button = e.target.closest('button[data-filter]');
      if (!button) return;
      els.search.value = '';
      runSearch('');
      navigate(state.openCid, button.dataset.filter);
    });
    on(els.search, 'input', () => {
      clearTimeout(searchTimer);
      const query = els.search.value;
      if (!query.trim()) runSearch('');
      else searchTimer = setTimeout(() => runSearch(query), SEARCH_DELAY_MS);
    });
    on(els.search, 'keydown', (e) => {
      if (e.key !== 'Enter') return;
      e.preventDefault();
      runSearch(els.search.value);
    });
    on(els.inboxMore, 'click', () => loadInbox(true));

    on(els.back, 'click', () => navigate(null));
    on(els.take, 'click', take);
    on(els.unassign, 'click', () => convAction('assign:servadm', { assignee: '' }));
    els.messages.addEventListener('scroll', () => els.messages.scrollTop < OLDER_MARGIN_PX && loadOlder(), { passive: true });
    on(els.replyForm, 'submit', (e) => {
      e.preventDefault();
      sendReply();
      els.reply.focus();
    });
    on(els.reply, 'keydown', onReplyKey);
    on(els.reply, 'input', () => {
      if (state.openCid) state.drafts.set(state.openCid, els.reply.value);
      tellTyping();
      updateCanned();
      changed('reply');
    });
    on(els.attach, 'click', () => els.fileInput.click());
    on(els.fileInput, 'change', () => {
      addFiles(els.fileInput.files);
      els.fileInput.value = ''; // the same file may be chosen again
    });
    on(els.reply, 'paste', (e) => {
      const data = e.clipboardData;
      const pasted = data ? Array.from(data.files || []) : [];
      // Text wins when there is some: office programs put a picture of the copied text beside it.
      if (!pasted.length || data.getData('text/plain')) return;
      e.preventDefault();
      addFiles(pasted);
    });
    // Files dragged over the conversation: a drop target over it while they are above it.
    const carriesFiles = (e) => Boolean(e.dataTransfer) && Array.from(e.dataTransfer.types || []).includes('Files');
    let dragDepth = 0;
    on(els.thread, 'dragenter', (e) => {
      if (!carriesFiles(e)) return;
      e.preventDefault();
      dragDepth += 1;
      els.dropZone.hidden = false;
    });
    on(els.thread, 'dragover', (e) => {
      if (!carriesFiles(e)) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = 'copy';
    });
    on(els.thread, 'dragleave', (e) => {
      if (!carriesFiles(e)) return;
      dragDepth = Math.max(0, dragDepth - 1);
      if (!dragDepth) els.dropZone.hidden = true;
    });
    on(els.thread, 'drop', (e) => {
      if (!carriesFiles(e)) return;
      e.preventDefault();
      dragDepth = 0;
      els.dropZone.hidden = true;
      addFiles(e.dataTransfer.files);
      els.reply.focus();
    });
    on(els.reply, 'blur', () => state.canned && closeCanned());
    on(els.noteForm, 'submit', submitNote);

    on(document, 'keydown', onShortcut);
    on(window, 'hashchange', applyRoute);
    on(document, 'visibilitychange', () => {
      if (!document.hidden) markRead();
      changed('title');
    });
    // Sound may only start after a gesture on the page: the first one after a reload unlocks it.
    for (const type of ['pointerdown', 'keydown']) document.addEventListener(type, unlockAudio, { passive: true });

    changed('screen');
    checkSession();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init, { once: true });
  else init();
}());
