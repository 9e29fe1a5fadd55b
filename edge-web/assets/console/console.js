/*!
 * Socketgram operator console: the page support staff sign in to and answer visitors from.
 * The web edge serves it at /console/ (index.html, this file, console.css), after the official
 * Socket.IO client at /socket.io/socket.io.min.js, which defines the global `io`.
 *
 * How it talks to the server (the console spec has the details):
 *   - HTTP under /console/api/: the session, signing in and out (JSON; errors are
 *     {error: {code, message}});
 *   - one Socket.IO connection, opened only once the session is known, with auth {console: true}:
 *     every request is an emit answered by its acknowledgement ({data} or {error}), and the
 *     server pushes live events (new messages, who is online, typing, assignment, ...).
 *
 * This file, top to bottom: constants, the dictionary (en, ru), helpers, the state store, the
 * HTTP and socket wrappers, the live events, one render function per region of the page, the
 * user's actions, and the wiring of DOM events.
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
  /** How close to the top of the history (in px) scrolling fetches older messages. */
  const OLDER_MARGIN_PX = 80;
  const API = '/console/api/';
  const LANG_KEY = 'socketgram.console.lang';
  const NOTIFY_KEY = 'socketgram.console.notify';
  const FILTERS = ['all', 'mine', 'unassigned', 'open', 'pending', 'resolved'];
  const NARROW = window.matchMedia('(max-width: 719.98px)');
  const WIDE = window.matchMedia('(min-width: 1100px)');

  // ---- the dictionary: every text of the page, by language ----
  // A value is a string with {placeholders}, or plural forms by Intl.PluralRules category.
  // Keys under "server." translate the server's English messages by error code; a language
  // without one shows the server's own words.
  const DICT = {
    en: {
      'loading': 'Loading…',
      'load.failed': 'Cannot reach the server. Check the connection and try again.',
      'retry': 'Try again',
      'signIn.lead': 'Sign in to answer your visitors.',
      'signIn.login': 'Login',
      'signIn.password': 'Password',
      'signIn.submit': 'Sign in',
      'signIn.busy': 'Signing in…',
      'signIn.missing': 'Enter your login and password.',
      'firstRun.title': 'Set up the first admin',
      'firstRun.lead': 'No one can sign in yet. Create the first admin on the server:',
      'firstRun.then': 'Then:',
      'firstRun.reload': 'Reload this page',
      'copy': 'Copy',
      'copied': 'Copied.',
      'copy.manual': 'The command is selected: press Ctrl+C (⌘C on a Mac) to copy it.',
      'language': 'Language',
      'links': 'Links',
      'links.demo': 'Demo',
      'links.health': 'Health',
      'signedInAs': 'Signed in as',
      'conn.connecting': 'Connecting…',
      'conn.reconnecting': 'Reconnecting…',
      'conn.noClient': 'The live connection cannot start: the Socket.IO client did not load.',
      'visitorsOnline': { one: '{n} visitor online', other: '{n} visitors online' },
      'settings': 'Settings',
      'notify': 'Notifications and sound',
      'notify.on': 'You are told of visitor messages when this tab is in the background or another conversation is open.',
      'notify.denied': 'The browser blocks notifications for this site: only the sound will play.',
      'notify.unsupported': 'This browser cannot show notifications here (they need HTTPS): only the sound will play.',
      'notify.title': 'New message: {name}',
      'notify.newConversation': 'New conversation: {name}',
      'shortcuts': 'Keyboard shortcuts',
      'signOut': 'Sign out',
      'signOutEverywhere': 'Sign out everywhere',
      'inbox': 'Inbox',
      'filter': 'Show',
      'filter.all': 'All',
      'filter.mine': 'Mine',
      'filter.unassigned': 'Unassigned',
      'filter.open': 'Open',
      'filter.pending': 'Pending',
      'filter.resolved': 'Resolved',
      'search': 'Search',
      'search.placeholder': 'Visitor id, name or words',
      'onlineNow': 'Online now',
      'onlineNow.none': 'No visitors on the site right now.',
      'teamOnline': 'Support online: {list}',
      'inbox.loading': 'Loading conversations…',
      'inbox.searching': 'Searching…',
      'inbox.empty': 'No conversations here.',
      'inbox.noResults': 'Nothing found for “{q}”.',
      'inbox.noMessage': 'No messages yet',
      'loadMore': 'Load more',
      'visitor': 'Visitor {cid}',
      'online': 'online',
      'offline': 'offline',
      'unread': { one: '{n} unread', other: '{n} unread' },
      'assignee': 'Assignee:',
      'assignee.nobody': 'Unassigned',
      'assignee.me': 'Assigned to you',
      'assignee.other': 'Assigned to {login}',
      'you': 'You',
      'status.open': 'Open',
      'status.pending': 'Pending',
      'status.resolved': 'Resolved',
      'status.snoozed': 'Snoozed',
      'status.snoozedUntil': 'Snoozed until {time}',
      'channel.web': 'Web',
      'channel.telegram': 'Telegram',
      'conv.pick': 'Pick a conversation from the inbox.',
      'back': 'Back',
      'take': 'Take',
      'unassign': 'Unassign',
      'statusGroup': 'Status',
      'set.open': 'Open',
      'set.pending': 'Pending',
      'set.resolved': 'Resolve',
      'set.reopen': 'Reopen',
      'messages': 'Messages',
      'messages.none': 'No messages yet.',
      'messages.older': 'Loading older messages…',
      'messages.start': 'This is the beginning of the conversation.',
      'seen': 'Seen',
      'sending': 'Sending…',
      'waiting': 'Waiting for the connection…',
      'notSent': 'Not sent: {reason}',
      'edit': 'Edit',
      'typing.visitor': 'Visitor is typing…',
      'typing.named': '{name} is typing…',
      'typing.colleague': 'A colleague is typing…',
      'reply': 'Reply',
      'reply.hint': 'Enter sends, Shift+Enter starts a new line, / picks a canned reply',
      'send': 'Send',
      'canned': 'Canned replies',
      'details': 'Details',
      'notes': 'Private notes',
      'notes.hint': 'Private note, the visitor does not see it',
      'notes.add': 'Add a private note',
      'notes.submit': 'Add note',
      'notes.none': 'No notes yet.',
      'notes.private': 'Private',
      'visitorPanel': 'Visitor',
      'verified': 'verified by your site',
      'reported': 'reported by the page',
      'field.id': 'Visitor id',
      'field.name': 'Name',
      'field.email': 'Email',
      'field.url': 'Page',
      'field.title': 'Page title',
      'field.language': 'Language',
      'field.timeZone': 'Time zone',
      'context.none': 'Nothing is known about this visitor yet.',
      'context.updated': 'Updated {time}',
      'erased': 'The conversation with visitor {cid} was erased by {by}.',
      'error.timeout': 'The server did not answer in time. Try again.',
      'error.network': 'Cannot reach the server. Check the connection and try again.',
      'error.unexpected': 'The server sent an answer this page does not understand.',
      'shortcuts.j': 'Next conversation',
      'shortcuts.k': 'Previous conversation',
      'shortcuts.u': 'Next conversation with unread messages',
      'shortcuts.r': 'Write a reply',
      'shortcuts.e': 'Resolve the open conversation',
      'shortcuts.help': 'Show this list',
      'shortcuts.esc': 'Leave the reply box',
      'close': 'Close',
    },
    ru: {
      'loading': 'Загрузка…',
      'load.failed': 'Не удаётся связаться с сервером. Проверьте подключение и попробуйте ещё раз.',
      'retry': 'Повторить',
      'signIn.lead': 'Войдите, чтобы отвечать посетителям сайта.',
      'signIn.login': 'Логин',
      'signIn.password': 'Пароль',
      'signIn.submit': 'Войти',
      'signIn.busy': 'Входим…',
      'signIn.missing': 'Введите логин и пароль.',
      'firstRun.title': 'Создайте первого администратора',
      'firstRun.lead': 'Войти пока никто не может. Создайте первого администратора на сервере:',
      'firstRun.then': 'Затем:',
      'firstRun.reload': 'Перезагрузите эту страницу',
      'copy': 'Копировать',
      'copied': 'Скопировано.',
      'copy.manual': 'Команда выделена: нажмите Ctrl+C (⌘C на Mac), чтобы скопировать её.',
      'language': 'Язык',
      'links': 'Ссылки',
      'links.demo': 'Демо',
      'links.health': 'Состояние сервера',
      'signedInAs': 'Вы вошли как',
      'conn.connecting': 'Подключение…',
      'conn.reconnecting': 'Переподключение…',
      'conn.noClient': 'Не удаётся установить соединение: клиент Socket.IO не загрузился.',
      'visitorsOnline': {
        one: '{n} посетитель на сайте', few: '{n} посетителя на сайте', many: '{n} посетителей на сайте',
        other: '{n} посетителя на сайте',
      },
      'settings': 'Настройки',
      'notify': 'Уведомления и звук',
      'notify.on': 'Вы узнаете о сообщениях посетителей, когда эта вкладка в фоне или открыт другой разговор.',
      'notify.denied': 'Браузер запретил уведомления для этого сайта: будет только звук.',
      'notify.unsupported': 'Здесь браузер не может показывать уведомления (нужен HTTPS): будет только звук.',
      'notify.title': 'Новое сообщение: {name}',
      'notify.newConversation': 'Новый разговор: {name}',
      'shortcuts': 'Горячие клавиши',
      'signOut': 'Выйти',
      'signOutEverywhere': 'Выйти на всех устройствах',
      'inbox': 'Входящие',
      'filter': 'Показать',
      'filter.all': 'Все',
      'filter.mine': 'Мои',
      'filter.unassigned': 'Без ответственного',
      'filter.open': 'Открытые',
      'filter.pending': 'В ожидании',
      'filter.resolved': 'Решённые',
      'search': 'Поиск',
      'search.placeholder': 'Номер, имя посетителя или слова',
      'onlineNow': 'Сейчас на сайте',
      'onlineNow.none': 'Сейчас на сайте никого нет.',
      'teamOnline': 'Поддержка в сети: {list}',
      'inbox.loading': 'Загружаем разговоры…',
      'inbox.searching': 'Ищем…',
      'inbox.empty': 'Здесь нет разговоров.',
      'inbox.noResults': 'По запросу «{q}» ничего не найдено.',
      'inbox.noMessage': 'Сообщений пока нет',
      'loadMore': 'Показать ещё',
      'visitor': 'Посетитель {cid}',
      'online': 'на сайте',
      'offline': 'не на сайте',
      'unread': {
        one: '{n} непрочитанное', few: '{n} непрочитанных', many: '{n} непрочитанных',
        other: '{n} непрочитанного',
      },
      'assignee': 'Ответственный:',
      'assignee.nobody': 'Без ответственного',
      'assignee.me': 'Ответственный — вы',
      'assignee.other': 'Ответственный — {login}',
      'you': 'Вы',
      'status.open': 'Открыт',
      'status.pending': 'В ожидании',
      'status.resolved': 'Решён',
      'status.snoozed': 'Отложен',
      'status.snoozedUntil': 'Отложен до {time}',
      'channel.web': 'Сайт',
      'channel.telegram': 'Telegram',
      'conv.pick': 'Выберите разговор во входящих.',
      'back': 'Назад',
      'take': 'Взять себе',
      'unassign': 'Снять с себя',
      'statusGroup': 'Статус',
      'set.open': 'Открыть',
      'set.pending': 'В ожидание',
      'set.resolved': 'Решено',
      'set.reopen': 'Открыть снова',
      'messages': 'Сообщения',
      'messages.none': 'Сообщений пока нет.',
      'messages.older': 'Загружаем более ранние сообщения…',
      'messages.start': 'Это начало разговора.',
      'seen': 'Прочитано',
      'sending': 'Отправляем…',
      'waiting': 'Ждём соединения…',
      'notSent': 'Не отправлено: {reason}',
      'edit': 'Изменить',
      'typing.visitor': 'Посетитель печатает…',
      'typing.named': '{name} печатает…',
      'typing.colleague': 'Коллега печатает…',
      'reply': 'Ответ',
      'reply.hint': 'Enter — отправить, Shift+Enter — новая строка, / — готовые ответы',
      'send': 'Отправить',
      'canned': 'Готовые ответы',
      'details': 'Подробности',
      'notes': 'Внутренние заметки',
      'notes.hint': 'Внутренняя заметка, посетитель её не видит',
      'notes.add': 'Добавить внутреннюю заметку',
      'notes.submit': 'Добавить',
      'notes.none': 'Заметок пока нет.',
      'notes.private': 'Внутренняя',
      'visitorPanel': 'Посетитель',
      'verified': 'подтверждено вашим сайтом',
      'reported': 'по данным страницы',
      'field.id': 'Номер посетителя',
      'field.name': 'Имя',
      'field.email': 'Эл. почта',
      'field.url': 'Страница',
      'field.title': 'Заголовок страницы',
      'field.language': 'Язык',
      'field.timeZone': 'Часовой пояс',
      'context.none': 'О посетителе пока ничего не известно.',
      'context.updated': 'Обновлено {time}',
      'erased': 'Разговор с посетителем {cid} удалён администратором {by}.',
      'error.timeout': 'Сервер не ответил вовремя. Попробуйте ещё раз.',
      'error.network': 'Не удаётся связаться с сервером. Проверьте подключение и попробуйте ещё раз.',
      'error.unexpected': 'Сервер прислал ответ, который эта страница не понимает.',
      'shortcuts.j': 'Следующий разговор',
      'shortcuts.k': 'Предыдущий разговор',
      'shortcuts.u': 'Следующий разговор с непрочитанными',
      'shortcuts.r': 'Перейти к ответу',
      'shortcuts.e': 'Отметить открытый разговор решённым',
      'shortcuts.help': 'Показать этот список',
      'shortcuts.esc': 'Выйти из поля ответа',
      'close': 'Закрыть',
      'server.signIn.unauthenticated': 'Неверный логин или пароль.',
      'server.rate_limited': 'Слишком много попыток. Попробуйте снова через {n} с.',
      'server.session_expired': 'Сессия истекла, войдите снова.',
      'server.csrf': 'Страница устарела: перезагрузите её и попробуйте снова.',
    },
  };

  // ---- small helpers ----

  /** localStorage that may be missing or refuse (private modes, sandboxes). */
  const local = {
    get(key) {
      try {
        return window.localStorage.getItem(key);
      } catch (_) {
        return null;
      }
    },
    set(key, value) {
      try {
        if (value === null) window.localStorage.removeItem(key);
        else window.localStorage.setItem(key, value);
      } catch (_) {
        /* a setting that is not kept is a nicety lost, not an error */
      }
    },
  };

  /** The saved language, else the browser's when it is Russian, else English. */
  function initialLang() {
    const saved = local.get(LANG_KEY);
    if (saved && DICT[saved]) return saved;
    return /^ru\b/i.test(navigator.language || '') ? 'ru' : 'en';
  }

  let lang = initialLang();
  let plurals = new Intl.PluralRules(lang);

  /** The text for `key` in the current language, with {placeholders} filled from `params`. */
  function t(key, params) {
    let entry = DICT[lang][key] !== undefined ? DICT[lang][key] : DICT.en[key];
    if (entry && typeof entry === 'object') entry = entry[plurals.select(Number(params.n))] || entry.other;
    if (typeof entry !== 'string') return key;
    return entry.replace(/\{(\w+)\}/g, (_, name) => (params && name in params ? String(params[name]) : ''));
  }

  /** Words for a refusal of the server: a translation by code where this language has one. */
  function serverText(error, context) {
    if (!error) return t('error.unexpected');
    const own = DICT[lang][`server.${context}.${error.code}`] || DICT[lang][`server.${error.code}`];
    if (own) return t(DICT[lang][`server.${context}.${error.code}`] ? `server.${context}.${error.code}` : `server.${error.code}`, error);
    return String(error.message || error.code || t('error.unexpected'));
  }

  /** Builds an element; strings become text nodes (never HTML). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === false || value === null || value === undefined) continue;
      if (key === 'class') el.className = value;
      else el.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(typeof child === 'string' ? document.createTextNode(child) : child);
    }
    return el;
  }

  /** A visitor id (cid) from a number or a numeric string; null when it is not one. */
  function toCid(value) {
    const n = Number(value);
    return Number.isSafeInteger(n) && n > 0 ? n : null;
  }

  /** A fresh client_msg_id. randomUUID exists only on HTTPS or localhost: a console on a
   *  LAN address over plain HTTP still needs ids. */
  function randomId() {
    if (window.crypto.randomUUID) return window.crypto.randomUUID();
    const bytes = window.crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  /** `YYYY-MM-DD HH:MM:SS` (server time) as given, or only HH:MM when it is today. */
  function shortDate(date) {
    const m = /^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2})/.exec(date || '');
    if (!m) return date || '';
    const now = new Date();
    const today = `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, '0')}-${String(now.getDate()).padStart(2, '0')}`;
    return m[1] === today ? m[2] : date;
  }

  /** A <time> for a server date, or nothing when there is none. */
  function timeEl(date, cls) {
    if (!date) return null;
    const valid = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})?$/.test(date);
    return h('time', { class: cls, datetime: valid ? date : null, title: date }, shortDate(date));
  }

  /** Milliseconds since 1970 in the reader's language: the time alone when it is today. */
  function formatMs(ms) {
    const d = new Date(Number(ms));
    if (Number.isNaN(d.getTime())) return '';
    const today = d.toDateString() === new Date().toDateString();
    return today
      ? d.toLocaleTimeString(lang, { hour: '2-digit', minute: '2-digit' })
      : d.toLocaleString(lang, { dateStyle: 'medium', timeStyle: 'short' });
  }

  /** Whether keys typed now go into a text field (and are no shortcuts). */
  function inTextField(el) {
    if (!el || !el.tagName) return false;
    if (el.isContentEditable || el.tagName === 'TEXTAREA' || el.tagName === 'SELECT') return true;
    return el.tagName === 'INPUT' && !['checkbox', 'radio', 'button', 'submit', 'reset'].includes(el.type);
  }

  /** A same-origin path from the server's links, or null (never a javascript: or foreign URL). */
  function localPath(href) {
    return typeof href === 'string' && /^\/(?!\/)/.test(href) ? href : null;
  }

  // ---- the state store ----
  // All the page knows lives in `state`. Code changes it, then calls changed('region', ...):
  // the regions are redrawn once, when the current task ends. A microtask, not an animation
  // frame: frames stop in a background tab, and the title must count unread messages there.

  const state = {
    screen: 'loading', // 'loading' | 'auth' | 'app'
    loadError: '',
    auth: { firstRun: false, commands: [], error: '', notice: '', busy: false, copyStatus: '' },
    session: null, // {admin, csrf, expires_at_ms, links} of GET /console/api/session
    connection: 'connecting', // 'connecting' | 'online' | 'reconnecting' | 'broken'
    convs: new Map(), // cid -> Conversation: every conversation this page knows
    inbox: { filter: 'all', cids: new Set(), hasMore: false, loading: false, error: '' },
    search: null, // {query, cids, loading, error} while the search box has text
    online: new Set(), // cids of the visitors on the site now
    admins: [],
    openCid: null,
    thread: null, // the open conversation: see newThread()
    pending: new Map(), // cid -> replies on their way: [{id, text, state, error}]
    drafts: new Map(), // cid -> the reply box's text, kept while another conversation is open
    canned: null, // {items: [{shortcut, text}], active} while the reply starts with "/"
    notify: local.get(NOTIFY_KEY) === '1',
    notice: '',
    error: '',
  };

  const RENDER_ORDER = ['screen', 'auth', 'header', 'title', 'filters', 'online', 'inbox',
    'conversation', 'messages', 'typing', 'reply', 'canned', 'notes', 'visitor'];
  const dirty = new Set();
  let renderQueued = false;

  /** Marks regions to redraw at the end of the current task. */
  function changed(...regions) {
    for (const region of regions) if (region) dirty.add(region);
    if (!renderQueued) {
      renderQueued = true;
      queueMicrotask(flush);
    }
  }

  function flush() {
    renderQueued = false;
    const regions = RENDER_ORDER.filter((r) => dirty.has(r));
    dirty.clear();
    for (const region of regions) RENDER[region]();
  }

  /** The open conversation's view: what the history pane shows and what it waits for. */
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
      scroll: 'end', // 'end': go to the newest message at the next render
      busy: false,
      error: '',
    };
  }

  const me = () => (state.session && state.session.admin) || {};
  const connected = () => Boolean(socket && socket.connected);

  // ---- HTTP ----

  /** One call of the console's HTTP API: {status, body}; throws {code, message} when the
   *  server cannot be reached at all. */
  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (method === 'POST' && state.session) headers['X-CSRF-Token'] = state.session.csrf;
    let response;
    try {
      response = await fetch(API + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'same-origin',
        cache: 'no-store',
      });
    } catch (_) {
      throw { code: 'network', message: t('error.network') };
    }
    let data = null;
    if (response.status !== 204) {
      try {
        data = await response.json();
      } catch (_) {
        data = null;
      }
    }
    return { status: response.status, body: data };
  }

  // ---- the socket ----

  let socket = null;
  let retryTimer = null;

  /**
   * A request on the socket: resolves the answer's data, or rejects with {code, message}
   * (a refusal of the server, or "timeout" when no answer came in time).
   */
  function request(name, payload) {
    return new Promise((resolve, reject) => {
      if (!socket) {
        reject({ code: 'unavailable', message: t('conn.reconnecting') });
        return;
      }
      socket.timeout(ACK_TIMEOUT_MS).emit(name, payload === undefined ? {} : payload, (err, answer) => {
        if (err) reject({ code: 'timeout', message: t('error.timeout') });
        else if (answer && answer.error) {
          reject({ code: String(answer.error.code || 'error'), message: serverText(answer.error, 'socket') });
        } else if (answer && 'data' in answer) resolve(answer.data);
        else reject({ code: 'unexpected', message: t('error.unexpected') });
      });
    });
  }

  /** Opens the live connection (once the session is known: the cookie authenticates it). */
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
      socket.on(name, (payload) => {
        if (payload && typeof payload === 'object') handler(payload);
      });
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
    // The server sends `online` for everyone on the site right after connecting.
    state.online.clear();
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
    // A refusal of the handshake stops the client's own retries: try again later.
    if (socket && !socket.active) {
      clearTimeout(retryTimer);
      retryTimer = setTimeout(() => socket && socket.connect(), 3000 + Math.random() * 2000);
    }
  }

  function onDisconnect(reason) {
    state.connection = 'reconnecting';
    changed('header');
    if (reason === 'io server disconnect') {
      // The server closed it: most often this admin signed out everywhere. The client does
      // not reconnect by itself here, so ask the session first.
      checkSession().then((signedIn) => {
        if (signedIn && socket && !socket.connected) socket.connect();
      });
    }
  }

  // ---- conversations and messages ----

  /** A Message from the wire, checked and with its numbers as numbers; null if unusable. */
  function normMessage(raw) {
    if (!raw || typeof raw !== 'object') return null;
    const label = Number(raw.label);
    const cid = toCid(raw.username);
    if (!Number.isSafeInteger(label) || label <= 0 || cid === null) return null;
    const adm = raw.adm === undefined || raw.adm === null ? '0' : String(raw.adm);
    return {
      cid,
      label,
      text: typeof raw.message === 'string' ? raw.message : String(raw.message ?? ''),
      date: typeof raw.date === 'string' ? raw.date : '',
      adm,
      author: typeof raw.author === 'string' ? raw.author : '',
      fromVisitor: adm === '0',
    };
  }

  /** Stores what the server says of a conversation over what was known; returns it. */
  function mergeConv(raw) {
    const cid = raw && toCid(raw.cid);
    if (cid === null || cid === undefined) return null;
    const conv = state.convs.get(cid) || { cid, status: 'open', unread_by_support: 0 };
    const known = conv.last_message;
    Object.assign(conv, raw, { cid });
    if (!('assignee' in raw)) delete conv.assignee; // absent means nobody
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
    switch (filter) {
      case 'mine': return conv.assignee === me().login;
      case 'unassigned': return !conv.assignee;
      case 'open': case 'pending': case 'resolved': return conv.status === filter;
      default: return true;
    }
  }

  /** The cids the inbox shows, in its order: the newest last message first. */
  function visibleCids() {
    const source = state.search ? state.search.cids : state.inbox.cids;
    const convs = [];
    for (const cid of source) {
      const conv = state.convs.get(cid);
      if (conv && (state.search || matchesFilter(conv, state.inbox.filter))) convs.push(conv);
    }
    const label = (c) => (c.last_message ? c.last_message.label : 0);
    convs.sort((a, b) => label(b) - label(a) || b.cid - a.cid);
    return convs.map((c) => c.cid);
  }

  /** Puts a message into the thread in label order; false when it was there already. */
  function addMessage(thread, m) {
    if (thread.messages.has(m.label)) return false;
    thread.messages.set(m.label, m);
    const labels = thread.labels;
    let lo = 0;
    let hi = labels.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (labels[mid] < m.label) lo = mid + 1;
      else hi = mid;
    }
    labels.splice(lo, 0, m.label);
    return true;
  }

  /**
   * A message arrived (the live event, or the answer to our own reply): the conversation moves
   * up the inbox, the open one shows it, and a visitor's message counts as unread unless it is
   * in view. `live` is false for our own reply's acknowledgement.
   */
  function receiveMessage(m, live) {
    let conv = state.convs.get(m.cid);
    const isNew = !conv;
    if (isNew) {
      conv = mergeConv({ cid: m.cid, status: 'open', online: state.online.has(m.cid), unread_by_support: 0 });
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
      else if (m.author && m.author === me().login) settleByText(m);
    }
    if (m.fromVisitor && live && fresh) {
      if (thread && !document.hidden) markRead();
      else conv.unread_by_support = (conv.unread_by_support || 0) + 1;
      if (!thread || document.hidden) attention(conv, m, isNew);
    }
    changed('inbox', 'title', thread && 'messages', thread && 'typing');
  }

  /** Our reply can arrive as an event before its acknowledgement: hide the pending copy. */
  function settleByText(m) {
    const items = state.pending.get(m.cid) || [];
    const item = items.find((p) => p.state === 'sending' && !p.matched && p.text === m.text);
    if (item) item.matched = true;
  }

  async function fetchConversation(cid) {
    try {
      const conv = mergeConv(await request('conversation:servadm', { username: cid }));
      if (conv && state.thread && state.thread.cid === cid) markRead();
      changed('inbox', 'title', 'conversation', 'visitor', 'messages');
    } catch (_) {
      /* the row stays as the message made it; the next inbox load fills it */
    }
  }

  // ---- live events ----

  /** Clears one "is typing" hint of the open conversation. */
  function dropTyping(thread, key) {
    const entry = thread.typing.get(key);
    if (entry) clearTimeout(entry.timer);
    thread.typing.delete(key);
  }

  /** Handlers of the server's events, by name; each gets an object payload. */
  const EVENTS = {
    'new message'(raw) {
      const m = normMessage(raw);
      if (m) receiveMessage(m, true);
    },
    online({ cid }) {
      setOnline(toCid(cid), true);
    },
    offline({ cid }) {
      setOnline(toCid(cid), false);
    },
    read({ cid, reader, mid }) {
      const conv = state.convs.get(toCid(cid));
      const mark = Number(mid);
      if (!conv || !Number.isSafeInteger(mark)) return;
      if (reader === 'visitor') {
        conv.visitor_read_up_to = Math.max(Number(conv.visitor_read_up_to) || 0, mark);
      } else if (reader === 'support') {
        conv.support_read_up_to = Math.max(Number(conv.support_read_up_to) || 0, mark);
        // Read on another tab or by a colleague: nothing up to the mark is unread any more.
        if (!conv.last_message || mark >= conv.last_message.label) conv.unread_by_support = 0;
      }
      changed('messages', 'inbox', 'title');
    },
    typing(ev) {
      const thread = state.thread;
      if (!thread || toCid(ev.cid) !== thread.cid) return;
      const visitor = ev.typist === 'visitor';
      const name = typeof ev.name === 'string' ? ev.name : '';
      if (!visitor && name && name === me().display_name) return; // our own typing, elsewhere
      const key = visitor ? 'visitor' : `support:${name}`;
      dropTyping(thread, key);
      if (ev.active) {
        const ms = Number(ev.shown_for_ms) > 0 ? Number(ev.shown_for_ms) : TYPING_SHOWN_MS;
        const entry = { visitor, name, preview: typeof ev.preview === 'string' ? ev.preview : '' };
        entry.timer = setTimeout(() => {
          if (thread.typing.get(key) === entry) {
            thread.typing.delete(key);
            changed('typing');
          }
        }, ms);
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
    note(ev) {
      addNote(ev);
    },
    context(ev) {
      const conv = state.convs.get(toCid(ev.cid));
      if (!conv) return;
      conv.context = ev;
      changed('inbox', 'conversation', 'visitor');
    },
    erased(ev) {
      const cid = toCid(ev.cid);
      if (cid === null) return;
      state.convs.delete(cid);
      state.inbox.cids.delete(cid);
      if (state.search) state.search.cids.delete(cid);
      state.pending.delete(cid);
      state.drafts.delete(cid);
      if (state.openCid === cid) {
        state.notice = t('erased', { cid, by: String(ev.by || '') });
        navigate(null);
      }
      changed('inbox', 'title', 'header');
    },
  };

  function setOnline(cid, online) {
    if (cid === null) return;
    if (online) state.online.add(cid);
    else state.online.delete(cid);
    const conv = state.convs.get(cid);
    if (conv) conv.online = online;
    changed('header', 'online', 'inbox', 'conversation');
  }

  /** A note for a conversation (our own answer, or the event): shown once. */
  function addNote(raw) {
    const thread = state.thread;
    if (!thread || toCid(raw.cid) !== thread.cid) return;
    if (thread.notes.some((n) => n.id === raw.id)) return;
    thread.notes.push(raw);
    thread.notes.sort((a, b) => (a.created_at_ms - b.created_at_ms) || (a.id - b.id));
    changed('notes');
  }

  // ---- loading ----

  let inboxSeq = 0;

  /** The inbox for the current filter; `more` fetches the next page below the last row. */
  async function loadInbox(more) {
    const inbox = state.inbox;
    const seq = ++inboxSeq;
    const payload = { filter: inbox.filter };
    if (more) {
      const labels = visibleCids().map((cid) => state.convs.get(cid).last_message)
        .filter(Boolean).map((m) => m.label);
      if (labels.length) payload.before = Math.min(...labels);
    }
    inbox.loading = true;
    inbox.error = '';
    changed('inbox');
    try {
      const data = await request('inbox:servadm', payload);
      if (seq !== inboxSeq) return;
      if (!more) inbox.cids.clear();
      for (const raw of (data && data.conversations) || []) {
        const conv = mergeConv(raw);
        if (conv) inbox.cids.add(conv.cid);
      }
      inbox.hasMore = Boolean(data && data.has_more);
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
      const data = await request('online:servadm', {});
      state.online = new Set(((data && data.visitors) || []).map(toCid).filter((c) => c !== null));
      state.admins = ((data && data.admins) || []).filter((a) => typeof a === 'string');
      for (const conv of state.convs.values()) conv.online = state.online.has(conv.cid);
      changed('header', 'online', 'inbox', 'conversation');
    } catch (_) {
      /* the online and offline events keep the list anyway */
    }
  }

  /** The open conversation, its newest history page and its notes (again after a reconnect). */
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
      const page = ((history.value && history.value.messages) || []).map(normMessage).filter(Boolean);
      const newestKnown = thread.labels.length ? thread.labels[thread.labels.length - 1] : 0;
      const oldestOfPage = page.length ? Math.min(...page.map((m) => m.label)) : 0;
      if (history.value.has_more && newestKnown && oldestOfPage > newestKnown) {
        // More came while we were away than one page holds: start from the newest page
        // rather than show a gap.
        thread.messages.clear();
        thread.labels = [];
        thread.scroll = 'end';
      }
      if (!thread.loaded) thread.hasMore = Boolean(history.value.has_more);
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
      const data = await request('history:servadm', { username: thread.cid, before: thread.labels[0] });
      if (state.thread !== thread) return;
      for (const m of ((data && data.messages) || []).map(normMessage).filter(Boolean)) addMessage(thread, m);
      thread.hasMore = Boolean(data && data.has_more);
    } catch (e) {
      thread.error = e.message;
      changed('conversation');
    } finally {
      thread.loadingOlder = false;
      changed('messages');
    }
  }

  /** Tells the server support has seen the open conversation, when new visitor messages are
   *  in view in a visible tab. */
  function markRead() {
    const thread = state.thread;
    const conv = thread && state.convs.get(thread.cid);
    if (!conv || document.hidden || !thread.labels.length || !connected()) return;
    let newestVisitor = 0;
    for (let i = thread.labels.length - 1; i >= 0; i--) {
      if (thread.messages.get(thread.labels[i]).fromVisitor) {
        newestVisitor = thread.labels[i];
        break;
      }
    }
    const readUpTo = Math.max(thread.readSent, Number(conv.support_read_up_to) || 0);
    if (newestVisitor <= readUpTo && !conv.unread_by_support) return;
    const mid = thread.labels[thread.labels.length - 1];
    thread.readSent = mid;
    conv.unread_by_support = 0;
    changed('inbox', 'title');
    request('read:servadm', { username: thread.cid, mid }).then((data) => {
      if (!data) return;
      conv.support_read_up_to = Number(data.support_read_up_to) || conv.support_read_up_to;
      conv.visitor_read_up_to = Math.max(Number(conv.visitor_read_up_to) || 0, Number(data.visitor_read_up_to) || 0);
      changed('messages');
    }, () => {
      if (thread.readSent === mid) thread.readSent = 0; // told again at the next chance
    });
  }

  // ---- attention: the tab title, notifications, sound ----

  let audio = null;

  /** The AudioContext may only start on a user's gesture: made in one, resumed in the next. */
  function unlockAudio() {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!state.notify || !Context) return;
    if (!audio) audio = new Context();
    if (audio.state === 'suspended') audio.resume().catch(() => {});
  }

  /** Two short soft tones, synthesised (the CSP allows no audio file from elsewhere, and none
   *  is needed). */
  function chime() {
    if (!audio || audio.state !== 'running') return;
    const start = audio.currentTime;
    [[880, 0], [1318.5, 0.13]].forEach(([frequency, at]) => {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.type = 'sine';
      osc.frequency.value = frequency;
      gain.gain.setValueAtTime(0.0001, start + at);
      gain.gain.exponentialRampToValueAtTime(0.18, start + at + 0.015);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + at + 0.22);
      osc.connect(gain).connect(audio.destination);
      osc.start(start + at);
      osc.stop(start + at + 0.25);
    });
  }

  /** A visitor wrote where support is not looking: a notification and a sound, if opted in. */
  function attention(conv, m, isNew) {
    if (!state.notify) return;
    chime();
    if (!('Notification' in window) || Notification.permission !== 'granted') return;
    const name = visitorName(conv);
    try {
      const n = new Notification(t(isNew ? 'notify.newConversation' : 'notify.title', { name }), {
        body: Array.from(m.text).slice(0, 200).join(''),
        tag: `socketgram-${conv.cid}`,
      });
      n.onclick = () => {
        window.focus();
        navigate(conv.cid);
        n.close();
      };
    } catch (_) {
      /* some mobile browsers only notify from a service worker: the sound still plays */
    }
  }

  function setNotify(on) {
    state.notify = on;
    local.set(NOTIFY_KEY, on ? '1' : null);
    if (on) {
      unlockAudio();
      // Asked inside the click that turned it on: browsers ask the user only then.
      if ('Notification' in window && Notification.permission === 'default') {
        Notification.requestPermission().then(() => changed('header'), () => {});
      }
      setTimeout(chime, 50); // what it will sound like
    }
    changed('header');
  }

  // ---- the session ----

  let expiryTimer = null;

  /**
   * Asks the server who is signed in and shows what follows: the app, or the sign-in or
   * first-run screen. Resolves true when signed in.
   */
  async function checkSession() {
    let answer;
    try {
      answer = await api('GET', 'session');
    } catch (e) {
      if (state.screen === 'app') return true; // a network blip: the socket reconnects
      state.screen = 'loading';
      state.loadError = e.message;
      changed('screen');
      return false;
    }
    if (answer.status === 200 && answer.body && answer.body.admin) {
      startApp(answer.body);
      return true;
    }
    if (answer.status === 401 && answer.body) {
      showAuth(answer.body);
      return false;
    }
    state.screen = 'loading';
    state.loadError = serverText(answer.body && answer.body.error);
    changed('screen');
    return false;
  }

  function showAuth(body) {
    const wasApp = state.screen === 'app';
    stopApp();
    const error = body.error || {};
    const plain = error.code === 'unauthenticated' && /^not signed in\.?$/i.test(error.message || '');
    state.screen = 'auth';
    state.links = body.links || null;
    state.auth.firstRun = body.first_run === true;
    state.auth.commands = (body.first_run_commands || []).filter((c) => typeof c === 'string');
    state.auth.notice = plain || !body.error ? '' : serverText(error, 'session');
    state.auth.error = '';
    state.auth.busy = false;
    changed('screen', 'auth');
    queueMicrotask(() => {
      if (state.auth.firstRun) return;
      if (wasApp || document.activeElement === document.body || !document.activeElement) els.login.focus();
    });
  }

  function startApp(session) {
    const first = state.screen !== 'app';
    state.session = session;
    state.links = session.links || null;
    state.screen = 'app';
    clearTimeout(expiryTimer);
    const ms = Number(session.expires_at_ms) - Date.now();
    if (Number.isFinite(ms)) {
      // When the session ends, show the sign-in form rather than wait for a failed request.
      expiryTimer = setTimeout(checkSession, Math.min(Math.max(ms, 0) + 1000, 2 ** 31 - 1));
    }
    if (first) {
      const route = parseRoute();
      state.inbox.filter = route.filter;
      if (route.cid) openConversation(route.cid);
    }
    connect();
    changed(...RENDER_ORDER);
  }

  /** Forgets everything of the signed-in admin (before the sign-in form shows). */
  function stopApp() {
    disconnect();
    clearTimeout(expiryTimer);
    clearTimeout(searchTimer);
    stopTyping();
    if (state.thread) for (const key of [...state.thread.typing.keys()]) dropTyping(state.thread, key);
    Object.assign(state, {
      session: null, connection: 'connecting', convs: new Map(), search: null, online: new Set(),
      admins: [], openCid: null, thread: null, pending: new Map(), drafts: new Map(), canned: null,
      notice: '', error: '',
    });
    state.inbox = { filter: state.inbox.filter, cids: new Set(), hasMore: false, loading: false, error: '' };
    els.search.value = '';
    els.reply.value = '';
    els.settingsPanel.hidden = true;
    threadEls.clear();
    renderedThread = null;
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
    state.auth.busy = true;
    state.auth.error = '';
    changed('auth');
    let answer;
    try {
      answer = await api('POST', 'sign-in', { login, password });
    } catch (e) {
      answer = { status: 0, body: { error: { code: 'network', message: e.message } } };
    }
    state.auth.busy = false;
    if (answer.status === 200 && answer.body && answer.body.admin) {
      els.password.value = '';
      state.auth.notice = '';
      startApp(answer.body);
      return;
    }
    const error = Object.assign({}, (answer.body && answer.body.error) || {}, {
      n: answer.body && answer.body.retry_after_secs,
    });
    state.auth.error = serverText(error, 'signIn');
    changed('auth');
    // Keep the login, clear the password, and put the cursor where the fix goes.
    els.password.value = '';
    els.password.focus();
  }

  async function signOut(everywhere) {
    let answer;
    try {
      answer = await api('POST', everywhere ? 'sign-out-everywhere' : 'sign-out');
    } catch (e) {
      state.error = e.message;
      changed('header');
      return;
    }
    if (answer.status === 204 || answer.status === 200 || answer.status === 401) {
      stopApp();
      await checkSession();
      return;
    }
    state.error = serverText(answer.body && answer.body.error);
    changed('header');
  }

  // ---- routing: #/c/<cid>?filter=<filter> ----

  function parseRoute() {
    const m = /^#\/(?:c\/(\d+))?\/?(?:\?(.*))?$/.exec(location.hash);
    if (!m) return { cid: null, filter: 'all' };
    const filter = new URLSearchParams(m[2] || '').get('filter');
    return { cid: m[1] ? toCid(m[1]) : null, filter: FILTERS.includes(filter) ? filter : 'all' };
  }

  /** Goes to a conversation (null: none) and filter, through the URL so a reload keeps both. */
  function navigate(cid, filter) {
    const f = filter || state.inbox.filter;
    const hash = `#/${cid ? `c/${cid}` : ''}${f !== 'all' ? `?filter=${f}` : ''}`;
    if (location.hash === hash) applyRoute();
    else location.hash = hash;
  }

  function applyRoute() {
    if (state.screen !== 'app') return;
    const route = parseRoute();
    if (route.filter !== state.inbox.filter) {
      state.inbox.filter = route.filter;
      state.inbox.cids.clear();
      state.inbox.hasMore = false;
      if (connected()) loadInbox(false);
      changed('filters', 'inbox');
    }
    if (route.cid !== state.openCid) openConversation(route.cid);
  }

  function openConversation(cid) {
    const previous = state.openCid;
    if (previous) {
      state.drafts.set(previous, els.reply.value);
      stopTyping();
    }
    if (state.thread) for (const key of [...state.thread.typing.keys()]) dropTyping(state.thread, key);
    state.openCid = cid;
    state.thread = cid ? newThread(cid) : null;
    state.canned = null;
    els.reply.value = (cid && state.drafts.get(cid)) || '';
    state.replyError = '';
    if (cid && connected()) loadThread(state.thread);
    changed(...RENDER_ORDER.slice(4));
    queueMicrotask(() => {
      if (cid && NARROW.matches) els.convTitle.focus();
      if (!cid && previous && NARROW.matches) {
        const row = els.inbox.querySelector(`[data-cid="${previous}"] button`);
        (row || els.search).focus();
      }
    });
  }

  // ---- rendering, one function per region ----

  const els = {};
  /** The open thread's message elements by label (rebuilt when another thread opens). */
  const threadEls = new Map();
  let renderedThread = null;
  const seenEl = h('p', { class: 'seen' });
  /** The inbox's rows by cid: kept across renders, so focus stays on a row's button. */
  const rowEls = new Map();
  /** The typing lines by who types: updated in place, so the live region does not repeat. */
  const typingEls = new Map();

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
      els.commands.replaceChildren(...a.commands.map((command, i) => {
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
      els.me.replaceChildren(h('span', { class: 'vh' }, `${t('signedInAs')} `),
        String(admin.display_name || admin.name || admin.login || ''));
      els.onlineCount.textContent = t('visitorsOnline', { n: state.online.size });
      els.connection.textContent = state.connection === 'online' ? ''
        : t(state.connection === 'broken' ? 'conn.noClient' : `conn.${state.connection}`);
      els.connection.hidden = state.connection === 'online';
      renderLinks(els.appLinks);
      els.lang.value = lang;
      els.notify.checked = state.notify;
      let hint = '';
      if (state.notify) {
        if (!('Notification' in window) || !window.isSecureContext) hint = t('notify.unsupported');
        else if (Notification.permission === 'denied') hint = t('notify.denied');
        else hint = t('notify.on');
      }
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
      els.onlineList.replaceChildren(...cids.map((cid) => {
        const button = h('button', {
          type: 'button', class: 'chip-button', 'aria-label': t('visitor', { cid }),
          'aria-current': cid === state.openCid ? 'true' : null,
        }, String(cid));
        button.addEventListener('click', () => navigate(cid));
        return h('li', {}, button);
      }));
      els.onlineEmpty.hidden = cids.length > 0;
      els.onlineEmpty.textContent = t('onlineNow.none');
      const others = state.admins.filter((a) => a !== me().login);
      els.teamOnline.hidden = others.length === 0;
      els.teamOnline.textContent = t('teamOnline', { list: others.join(', ') });
    },

    inbox() {
      const cids = visibleCids();
      const search = state.search;
      const source = search || state.inbox;
      let status = '';
      if (source.error) status = source.error;
      else if (source.loading && !cids.length) status = t(search ? 'inbox.searching' : 'inbox.loading');
      else if (!cids.length) status = search ? t('inbox.noResults', { q: search.query }) : t('inbox.empty');
      els.inboxStatus.textContent = status;
      els.inboxStatus.classList.toggle('is-error', Boolean(source.error));
      for (const [cid, row] of rowEls) {
        if (!cids.includes(cid)) {
          row.li.remove();
          rowEls.delete(cid);
        }
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
        // Only rows out of place move: moving the focused one would lose the focus.
        if (els.inbox.children[i] !== row.li) els.inbox.insertBefore(row.li, els.inbox.children[i] || null);
      });
      els.inboxMore.hidden = Boolean(search) || !state.inbox.hasMore;
      els.inboxMore.disabled = state.inbox.loading;
    },

    conversation() {
      const conv = state.openCid && state.convs.get(state.openCid);
      els.app.dataset.view = state.openCid ? 'conversation' : 'inbox';
      els.convEmpty.hidden = Boolean(state.openCid);
      els.convView.hidden = !state.openCid;
      if (!state.openCid) return;
      const c = conv || { cid: state.openCid, status: 'open' };
      const online = isOnline(c.cid);
      els.convTitle.textContent = visitorName(c);
      els.convMeta.replaceChildren(
        h('span', { class: 'chip' }, t(c.channel === 'telegram' ? 'channel.telegram' : 'channel.web')),
        h('span', { class: `presence${online ? ' is-online' : ''}` },
          h('span', { class: 'dot', 'aria-hidden': 'true' }), t(online ? 'online' : 'offline')),
        h('span', { class: `chip status-${c.status}` }, statusText(c)));
      const mine = c.assignee && c.assignee === me().login;
      els.assignee.textContent = !c.assignee ? t('assignee.nobody')
        : t(mine ? 'assignee.me' : 'assignee.other', { login: c.assignee });
      els.take.hidden = Boolean(mine);
      els.unassign.hidden = !mine;
      const buttons = [];
      if (c.status !== 'open' && c.status !== 'resolved') buttons.push(['open', 'set.open']);
      if (c.status !== 'pending' && c.status !== 'resolved') buttons.push(['pending', 'set.pending']);
      buttons.push(c.status === 'resolved' ? ['open', 'set.reopen'] : ['resolved', 'set.resolved']);
      els.statusButtons.replaceChildren(...buttons.map(([status, key]) => {
        const b = h('button', { type: 'button', class: status === 'resolved' ? 'primary' : 'secondary', 'data-status': status }, t(key));
        b.disabled = Boolean(state.thread && state.thread.busy);
        b.addEventListener('click', () => setStatus(status));
        return b;
      }));
      els.take.disabled = els.unassign.disabled = Boolean(state.thread && state.thread.busy);
      els.convError.textContent = (state.thread && state.thread.error) || '';
    },

    messages() {
      const thread = state.thread;
      const log = els.messages;
      if (renderedThread !== thread) {
        // Another conversation: its elements start afresh.
        threadEls.clear();
        els.msgList.replaceChildren();
        renderedThread = thread;
      }
      if (!thread) return;
      const conv = state.convs.get(thread.cid);
      const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 60;
      // The first message in view before: it stays where it is when older ones go above.
      const anchor = els.msgList.firstElementChild;
      const anchorTop = anchor ? anchor.offsetTop : 0;
      const lastBefore = els.msgList.lastElementChild;
      let next = els.msgList.firstElementChild;
      for (const label of thread.labels) {
        let el = threadEls.get(label);
        if (!el) {
          el = messageElement(thread.messages.get(label), conv);
          threadEls.set(label, el);
        }
        if (el === next) next = next.nextElementSibling;
        else els.msgList.insertBefore(el, next);
      }
      // The "Seen" line: under the newest support message the visitor has read.
      const readUpTo = Number(conv && conv.visitor_read_up_to) || 0;
      const seenLabel = thread.labels.slice().reverse()
        .find((l) => l <= readUpTo && !thread.messages.get(l).fromVisitor);
      seenEl.textContent = t('seen');
      if (seenLabel) threadEls.get(seenLabel).append(seenEl);
      else seenEl.remove();
      const items = (state.pending.get(thread.cid) || []).filter((item) => !item.matched);
      els.pendingList.replaceChildren(...items.map((item) => pendingElement(thread.cid, item)));
      els.older.textContent = thread.loadingOlder ? t('messages.older')
        : thread.loaded && !thread.hasMore && thread.labels.length ? t('messages.start') : '';
      log.setAttribute('aria-busy', String(!thread.loaded || thread.loadingOlder));
      els.msgEmpty.hidden = !thread.loaded || thread.labels.length > 0 || items.length > 0;
      els.msgEmpty.textContent = t('messages.none');
      const appended = els.msgList.lastElementChild !== lastBefore;
      if (thread.scroll === 'end' || (appended && atBottom)) {
        log.scrollTop = log.scrollHeight;
      } else if (anchor && anchor.isConnected) {
        log.scrollTop += anchor.offsetTop - anchorTop;
      }
      if (thread.loaded) thread.scroll = null;
      // A first page shorter than the pane gives nothing to scroll: fetch more at once.
      if (thread.hasMore && !thread.loadingOlder && log.clientHeight > 0 && log.scrollHeight <= log.clientHeight + 8) {
        loadOlder();
      }
    },

    typing() {
      const thread = state.thread;
      const entries = thread ? thread.typing : new Map();
      for (const [key, el] of typingEls) {
        if (!entries.has(key)) {
          el.line.remove();
          typingEls.delete(key);
        }
      }
      for (const [key, entry] of entries) {
        let el = typingEls.get(key);
        if (!el) {
          el = { text: h('span', {}), preview: h('span', { class: 'typing-preview', 'aria-hidden': 'true' }) };
          el.line = h('span', { class: 'typing-line' }, el.text, el.preview);
          typingEls.set(key, el);
          els.typing.append(el.line);
        }
        const text = entry.visitor ? t('typing.visitor')
          : entry.name ? t('typing.named', { name: entry.name }) : t('typing.colleague');
        if (el.text.textContent !== text) el.text.textContent = text;
        // The draft is only a glimpse: hidden from the live region, which would read every change.
        const preview = entry.preview ? ` ${entry.preview}` : '';
        if (el.preview.textContent !== preview) el.preview.textContent = preview;
      }
    },

    reply() {
      els.replyError.textContent = state.replyError || '';
    },

    canned() {
      const canned = state.canned;
      els.canned.hidden = !canned || canned.items.length === 0;
      if (els.canned.hidden) {
        els.reply.removeAttribute('aria-activedescendant');
        els.canned.replaceChildren();
        return;
      }
      els.canned.replaceChildren(...canned.items.map((item, i) => {
        const option = h('li', {
          role: 'option', id: `canned-${i}`, 'aria-selected': String(i === canned.active),
          class: i === canned.active ? 'is-active' : null,
        }, h('span', { class: 'canned-key' }, `/${item.shortcut}`), h('span', { class: 'canned-text' }, item.text));
        // mousedown, not click: the reply box keeps the focus.
        option.addEventListener('mousedown', (e) => {
          e.preventDefault();
          pickCanned(i);
        });
        return option;
      }));
      els.reply.setAttribute('aria-activedescendant', `canned-${canned.active}`);
      const active = els.canned.children[canned.active];
      if (active) active.scrollIntoView({ block: 'nearest' });
    },

    notes() {
      const thread = state.thread;
      const notes = thread ? thread.notes : [];
      els.notes.replaceChildren(...notes.map((n) => h('li', { class: 'note' },
        h('p', { class: 'note-meta' }, h('span', { class: 'note-tag' }, t('notes.private')), ' ',
          h('span', { class: 'note-author' }, String(n.admin || '')), ' ',
          h('time', { datetime: new Date(Number(n.created_at_ms) || 0).toISOString() }, formatMs(n.created_at_ms))),
        h('p', { class: 'note-text' }, String(n.text || '')))));
      els.notesEmpty.hidden = notes.length > 0 || !(thread && thread.notesLoaded);
      els.notesEmpty.textContent = t('notes.none');
      els.notesCount.textContent = notes.length ? ` (${notes.length})` : '';
    },

    visitor() {
      const conv = state.openCid && state.convs.get(state.openCid);
      const context = (conv && conv.context) || {};
      const verified = context.verified || {};
      const page = context.page || {};
      const rows = [[t('field.id'), String(state.openCid || ''), null]];
      const add = (label, value, source) => {
        if (value !== undefined && value !== null && value !== '') rows.push([label, String(value), source]);
      };
      add(t('field.name'), verified.name, 'verified');
      add(t('field.email'), verified.email, 'verified');
      for (const [k, v] of Object.entries(verified.fields || {})) add(k, v, 'verified');
      add(t('field.url'), page.url, 'reported');
      add(t('field.title'), page.title, 'reported');
      add(t('field.language'), page.language, 'reported');
      add(t('field.timeZone'), page.time_zone, 'reported');
      els.visitorInfo.replaceChildren(
        h('dl', { class: 'facts' }, rows.map(([label, value, source]) => h('div', { class: `fact${source ? ` is-${source}` : ''}` },
          h('dt', {}, label),
          h('dd', {}, h('span', { class: 'fact-value' }, value),
            source ? h('span', { class: 'fact-source' }, t(source)) : null)))),
        rows.length === 1 ? h('p', { class: 'hint' }, t('context.none')) : null,
        context.updated_at_ms ? h('p', { class: 'hint' }, t('context.updated', { time: formatMs(context.updated_at_ms) })) : null);
    },
  };

  function statusText(conv) {
    if (conv.status === 'snoozed') {
      return conv.snoozed_until_ms ? t('status.snoozedUntil', { time: formatMs(conv.snoozed_until_ms) }) : t('status.snoozed');
    }
    return t(`status.${['open', 'pending', 'resolved'].includes(conv.status) ? conv.status : 'open'}`);
  }

  /** The inbox row's content: name, presence, time, last message, status, assignee, unread. */
  function fillRow(row, conv) {
    const last = conv.last_message;
    const unread = Number(conv.unread_by_support) || 0;
    const online = isOnline(conv.cid);
    let preview = t('inbox.noMessage');
    if (last) {
      const text = Array.from(last.text).slice(0, 200).join('').replace(/\s+/g, ' ');
      preview = last.fromVisitor ? text : `${last.author === me().login ? t('you') : last.adm}: ${text}`;
    }
    const assignee = !conv.assignee ? t('assignee.nobody') : conv.assignee === me().login ? t('you') : conv.assignee;
    row.li.classList.toggle('is-unread', unread > 0);
    row.li.classList.toggle('is-open', conv.cid === state.openCid);
    if (conv.cid === state.openCid) row.button.setAttribute('aria-current', 'true');
    else row.button.removeAttribute('aria-current');
    row.button.replaceChildren(
      h('span', { class: 'row-line' },
        h('span', { class: `dot${online ? ' is-online' : ''}`, 'aria-hidden': 'true' }),
        h('span', { class: 'row-name' }, visitorName(conv)),
        h('span', { class: 'vh' }, `, ${t(online ? 'online' : 'offline')}, `),
        last ? timeEl(last.date, 'row-time') : null),
      h('span', { class: 'row-text' }, preview),
      h('span', { class: 'row-line row-meta' },
        h('span', { class: `chip status-${conv.status}` }, statusText(conv)),
        h('span', { class: 'row-assignee' }, h('span', { class: 'vh' }, `${t('assignee')} `), assignee),
        unread ? h('span', { class: 'badge', role: 'img', 'aria-label': t('unread', { n: unread }) }, String(unread)) : null));
  }

  function messageElement(m, conv) {
    const visitor = m.fromVisitor;
    return h('div', { class: `msg ${visitor ? 'from-visitor' : 'from-support'}`, 'data-label': m.label },
      h('p', { class: 'msg-meta' },
        visitor ? h('span', { class: 'vh' }, `${visitorName(conv)} `) : h('span', { class: 'msg-author' }, m.adm),
        timeEl(m.date)),
      h('p', { class: 'msg-text' }, m.text));
  }

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
      h('p', { class: 'msg-text' }, item.text), status);
  }

  function renderLinks(container) {
    const links = state.links || {};
    const list = [[localPath(links.demo), 'links.demo'], [localPath(links.health), 'links.health']]
      .filter(([href]) => href);
    container.replaceChildren(...list.map(([href, key]) => h('a', { href }, t(key))));
    container.hidden = list.length === 0;
  }

  // ---- actions ----

  /** Sends a request that changes the open conversation; its answer is the Conversation. */
  async function convAction(name, payload) {
    const thread = state.thread;
    if (!thread) return;
    thread.busy = true;
    thread.error = '';
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
    // take: true is refused when someone has it: taking it over names oneself instead.
    convAction('assign:servadm', conv && conv.assignee && conv.assignee !== me().login
      ? { assignee: me().login } : { take: true });
  }

  function setStatus(status) {
    convAction('status:servadm', { status });
  }

  /** Sends what the reply box holds, as a pending message until the server stores it. */
  function sendReply() {
    const cid = state.openCid;
    const text = els.reply.value;
    if (!cid || !text.trim()) return;
    // The same text sent again after "Edit" is the same reply: it keeps its id, so the
    // server stores it once even if the first try did arrive.
    const again = state.editing && state.editing.cid === cid && state.editing.text === text ? state.editing.id : null;
    state.editing = null;
    const item = { id: again || randomId(), text, state: 'queued', error: '', matched: false };
    const items = state.pending.get(cid) || [];
    items.push(item);
    state.pending.set(cid, items);
    els.reply.value = '';
    state.drafts.delete(cid);
    state.canned = null;
    stopTyping();
    if (state.thread) state.thread.scroll = 'end';
    if (connected()) sendItem(cid, item);
    changed('messages', 'canned');
  }

  function sendItem(cid, item) {
    item.state = 'sending';
    item.error = '';
    item.matched = false;
    state.replyError = '';
    changed('messages', 'reply');
    request('new message:servadm', { username: cid, message: item.text, client_msg_id: item.id }).then((raw) => {
      removePending(cid, item);
      const m = normMessage(raw);
      if (m) receiveMessage(m, false);
    }, (e) => {
      // Lost with the connection: sent again (same id) once connected. Otherwise shown as not
      // sent, with its text kept, to try again or edit.
      item.state = e.code === 'timeout' && !connected() ? 'queued' : 'failed';
      item.error = e.message;
      item.matched = false;
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

  /** A reply that was not sent goes back into the reply box, to change and send again. */
  function editPending(cid, item) {
    removePending(cid, item);
    const draft = els.reply.value;
    els.reply.value = draft ? `${item.text}\n${draft}` : item.text;
    state.editing = { cid, id: item.id, text: els.reply.value };
    state.replyError = '';
    changed('reply');
    els.reply.focus();
  }

  const typingOut = { cid: null, sentAt: 0, sentChars: -1, timer: null };

  /** typing:servadm while the reply has text: at most once a second, on changes only. */
  function tellTyping() {
    const cid = state.openCid;
    if (!cid || !connected()) return;
    const chars = Array.from(els.reply.value).length;
    if (chars === 0) {
      stopTyping();
      return;
    }
    const wait = typingOut.sentAt + TYPING_EVERY_MS - Date.now();
    if (wait > 0) {
      if (!typingOut.timer) typingOut.timer = setTimeout(() => { typingOut.timer = null; tellTyping(); }, wait);
      return;
    }
    if (chars === typingOut.sentChars && typingOut.cid === cid) return;
    Object.assign(typingOut, { cid, sentAt: Date.now(), sentChars: chars });
    request('typing:servadm', { username: cid, chars }).catch(() => {});
  }

  /** chars: 0, once, when the reply is sent or cleared or the conversation left. */
  function stopTyping() {
    clearTimeout(typingOut.timer);
    typingOut.timer = null;
    if (typingOut.cid && typingOut.sentChars > 0 && connected()) {
      request('typing:servadm', { username: typingOut.cid, chars: 0 }).catch(() => {});
    }
    Object.assign(typingOut, { cid: null, sentAt: 0, sentChars: -1 });
  }

  let cannedSeq = 0;
  let cannedTimer = null;

  /** A reply starting with "/" lists the canned replies whose shortcut starts so. */
  function updateCanned() {
    clearTimeout(cannedTimer);
    const m = /^\/(\S*)$/.exec(els.reply.value);
    const seq = ++cannedSeq;
    if (!m || !connected()) {
      if (state.canned) {
        state.canned = null;
        changed('canned');
      }
      return;
    }
    cannedTimer = setTimeout(() => {
      request('canned replies:servadm', { prefix: m[1] }).then((data) => {
        if (seq !== cannedSeq) return;
        const items = Object.entries((data && data.replies) || {})
          .filter(([, text]) => typeof text === 'string')
          .map(([shortcut, text]) => ({ shortcut, text }));
        state.canned = items.length ? { items, active: 0 } : null;
        changed('canned');
      }, () => {
        if (seq === cannedSeq) state.canned = null;
        changed('canned');
      });
    }, 120);
  }

  function pickCanned(i) {
    const item = state.canned && state.canned.items[i];
    if (!item) return;
    cannedSeq++;
    els.reply.value = item.text;
    els.reply.setSelectionRange(item.text.length, item.text.length);
    state.canned = null;
    changed('canned');
    tellTyping();
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

  /** Searches (or, for an empty query, goes back to the filtered inbox). */
  function runSearch(query, again) {
    clearTimeout(searchTimer);
    const q = query.trim();
    if (!q) {
      if (state.search) {
        state.search = null;
        changed('inbox', 'filters');
      }
      return;
    }
    if (!again && state.search && state.search.query === q && !state.search.error) return;
    const search = { query: q, cids: new Set(), loading: true, error: '' };
    state.search = search;
    changed('inbox', 'filters');
    request('search:servadm', { query: q }).then((data) => {
      for (const raw of (data && data.conversations) || []) {
        const conv = mergeConv(raw);
        if (conv) search.cids.add(conv.cid);
      }
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
      // No clipboard (plain HTTP): select the text for the reader to copy.
      const range = document.createRange();
      range.selectNodeContents(document.getElementById(`command-${i}`));
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
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
    // Messages say "Visitor 42" for screen readers: build them again in the new language.
    threadEls.clear();
    els.msgList.replaceChildren();
    changed(...RENDER_ORDER);
  }

  /** The texts written in index.html: data-i18n (text), data-i18n-label, data-i18n-placeholder. */
  function translateStatic() {
    for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
    for (const el of document.querySelectorAll('[data-i18n-label]')) el.setAttribute('aria-label', t(el.dataset.i18nLabel));
    for (const el of document.querySelectorAll('[data-i18n-placeholder]')) el.placeholder = t(el.dataset.i18nPlaceholder);
  }

  // ---- keyboard ----

  /** j / k: the next / previous conversation of the inbox; u: the next one with unread. */
  function step(delta, unreadOnly) {
    const cids = visibleCids();
    if (!cids.length) return;
    const at = cids.indexOf(state.openCid);
    let target = null;
    if (unreadOnly) {
      for (let i = 1; i <= cids.length; i++) {
        const cid = cids[(Math.max(at, -1) + i + cids.length) % cids.length];
        if (Number(state.convs.get(cid).unread_by_support) > 0 && cid !== state.openCid) {
          target = cid;
          break;
        }
      }
    } else {
      target = at < 0 ? cids[delta > 0 ? 0 : cids.length - 1] : cids[Math.min(Math.max(at + delta, 0), cids.length - 1)];
    }
    if (target === null || target === state.openCid) return;
    const inInbox = els.inbox.contains(document.activeElement);
    navigate(target);
    if (inInbox) {
      const row = rowEls.get(target);
      if (row) row.button.focus();
    }
  }

  function onShortcut(e) {
    if (state.screen !== 'app' || e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey) return;
    if (inTextField(e.target) || els.shortcutsDialog.open) return;
    switch (e.key) {
      case 'j': step(1); break;
      case 'k': step(-1); break;
      case 'u': step(1, true); break;
      case 'r': if (state.openCid) els.reply.focus(); break;
      case 'e': if (state.openCid) setStatus('resolved'); break;
      case '?': els.shortcutsDialog.showModal(); break;
      default: return;
    }
    e.preventDefault();
  }

  function onReplyKey(e) {
    const canned = state.canned;
    if (canned && canned.items.length) {
      const n = canned.items.length;
      if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
        e.preventDefault();
        canned.active = (canned.active + (e.key === 'ArrowDown' ? 1 : n - 1)) % n;
        changed('canned');
        return;
      }
      if ((e.key === 'Enter' && !e.shiftKey) || e.key === 'Tab') {
        e.preventDefault();
        pickCanned(canned.active);
        return;
      }
      if (e.key === 'Escape') {
        e.preventDefault();
        cannedSeq++;
        state.canned = null;
        changed('canned');
        return;
      }
    }
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      sendReply();
    } else if (e.key === 'Escape') {
      e.preventDefault();
      els.messages.focus();
    }
  }

  // ---- wiring ----

  function init() {
    for (const el of document.querySelectorAll('[id]')) {
      els[el.id.replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = el;
    }
    document.documentElement.lang = lang;
    translateStatic();
    // The details start open where there is room for them beside the history.
    els.visitorPanel.open = WIDE.matches;
    els.notesPanel.open = WIDE.matches;

    els.signIn.addEventListener('submit', signIn);
    els.reload.addEventListener('click', () => location.reload());
    els.loadingRetry.addEventListener('click', () => {
      state.loadError = '';
      changed('screen');
      checkSession();
    });
    for (const select of [els.lang, els.authLang]) select.addEventListener('change', () => setLang(select.value));
    els.notify.addEventListener('change', () => setNotify(els.notify.checked));
    els.settingsButton.addEventListener('click', () => toggleSettings(els.settingsPanel.hidden));
    els.settingsPanel.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') {
        toggleSettings(false);
        els.settingsButton.focus();
      }
    });
    document.addEventListener('click', (e) => {
      if (!els.settingsPanel.hidden && !els.settings.contains(e.target)) toggleSettings(false);
    });
    els.showShortcuts.addEventListener('click', () => {
      toggleSettings(false);
      els.shortcutsDialog.showModal();
    });
    els.signOut.addEventListener('click', () => signOut(false));
    els.signOutEverywhere.addEventListener('click', () => signOut(true));

    els.filters.addEventListener('click', (e) => {
      const button = e.target.closest('button[data-filter]');
      if (!button) return;
      els.search.value = '';
      runSearch('');
      navigate(state.openCid, button.dataset.filter);
    });
    els.search.addEventListener('input', () => {
      clearTimeout(searchTimer);
      const query = els.search.value;
      if (!query.trim()) runSearch('');
      else searchTimer = setTimeout(() => runSearch(query), SEARCH_DELAY_MS);
    });
    els.search.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') {
        e.preventDefault();
        runSearch(els.search.value);
      }
    });
    els.inboxMore.addEventListener('click', () => loadInbox(true));

    els.back.addEventListener('click', () => navigate(null));
    els.take.addEventListener('click', take);
    els.unassign.addEventListener('click', () => convAction('assign:servadm', { assignee: '' }));
    els.messages.addEventListener('scroll', () => {
      if (els.messages.scrollTop < OLDER_MARGIN_PX) loadOlder();
    }, { passive: true });
    els.replyForm.addEventListener('submit', (e) => {
      e.preventDefault();
      sendReply();
      els.reply.focus();
    });
    els.reply.addEventListener('keydown', onReplyKey);
    els.reply.addEventListener('input', () => {
      if (state.openCid) state.drafts.set(state.openCid, els.reply.value);
      tellTyping();
      updateCanned();
    });
    els.reply.addEventListener('blur', () => {
      if (state.canned) {
        state.canned = null;
        changed('canned');
      }
    });
    els.noteForm.addEventListener('submit', submitNote);

    document.addEventListener('keydown', onShortcut);
    window.addEventListener('hashchange', applyRoute);
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) markRead();
      changed('title');
    });
    // Sound may only start after a gesture on the page: the first one after a reload unlocks it.
    for (const type of ['pointerdown', 'keydown']) document.addEventListener(type, unlockAudio, { passive: true });

    changed('screen');
    checkSession();
  }

  function toggleSettings(open) {
    els.settingsPanel.hidden = !open;
    els.settingsButton.setAttribute('aria-expanded', String(open));
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init, { once: true });
  else init();
}());
