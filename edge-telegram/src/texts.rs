//! Every text the bot shows, in English and Russian (LEGACY.md §7), in one place. Texts are
//! Telegram HTML: whatever comes from users, admins or the core is escaped here, with
//! [`escape`], and nowhere else.

use socketgram_common::files::{file_line, human_size};

use crate::config::Language;

/// Escapes text for Telegram's HTML parse mode (`&`, `<`, `>`; quotes are only special
/// inside attributes, which we never build from user text).
pub fn escape(text: &str) -> String {
    teloxide::utils::html::escape(text)
}

/// The bot's texts in one language. Button labels are also how the bot recognises a press
/// (a reply keyboard sends its label as a message).
#[derive(Clone, Copy, Debug)]
pub struct Texts {
    language: Language,
}

impl Texts {
    pub fn new(language: Language) -> Self {
        Self { language }
    }

    fn pick(&self, en: &'static str, ru: &'static str) -> &'static str {
        match self.language {
            Language::En => en,
            Language::Ru => ru,
        }
    }

    pub fn button_login(&self) -> &'static str {
        self.pick("Log in", "Войти")
    }

    pub fn button_contacts(&self) -> &'static str {
        self.pick("Contacts", "Контакты")
    }

    pub fn button_write(&self) -> &'static str {
        self.pick("Write to support", "Написать в поддержку")
    }

    pub fn button_back(&self) -> &'static str {
        self.pick("Back", "Назад")
    }

    /// `/start`: a greeting by first name with the company name.
    pub fn greeting(&self, first_name: &str, company: &str) -> String {
        let (name, company) = (escape(first_name), escape(company));
        match (self.language, company.is_empty()) {
            (Language::En, false) => {
                format!("Hello, {name}! This is the <b>{company}</b> support bot.")
            }
            (Language::En, true) => format!("Hello, {name}! This is the support bot."),
            (Language::Ru, false) => {
                format!("Здравствуйте, {name}! Это бот поддержки <b>{company}</b>.")
            }
            (Language::Ru, true) => format!("Здравствуйте, {name}! Это бот поддержки."),
        }
    }

    /// Shown with the menu keyboard.
    pub fn menu(&self) -> &'static str {
        self.pick("Choose an action below.", "Выберите действие.")
    }

    /// Shown with the menu to every linked chat when the bot starts.
    pub fn restarted(&self) -> &'static str {
        self.pick(
            "The support bot has restarted. Choose an action below.",
            "Бот поддержки перезапущен. Выберите действие.",
        )
    }

    pub fn no_contacts(&self) -> &'static str {
        self.pick(
            "No contacts are published yet.",
            "Контакты пока не указаны.",
        )
    }

    pub fn ask_login(&self) -> &'static str {
        self.pick(
            "Enter your login: <b>id</b> followed by your number, e.g. id123.",
            "Введите логин: <b>id</b> и ваш номер, например id123.",
        )
    }

    pub fn login_placeholder(&self) -> &'static str {
        "id123"
    }

    pub fn ask_password(&self) -> &'static str {
        self.pick("Enter your password.", "Введите пароль.")
    }

    pub fn password_placeholder(&self) -> &'static str {
        self.pick("password", "пароль")
    }

    pub fn logged_in(&self, login: &str) -> String {
        let login = escape(login);
        match self.language {
            Language::En => format!(
                "You are logged in as <b>{login}</b>. Press “Write to support” to write to us."
            ),
            Language::Ru => format!(
                "Вы вошли как <b>{login}</b>. Нажмите «Написать в поддержку», чтобы написать нам."
            ),
        }
    }

    /// `/start <token>` from the widget's "Continue in Telegram": the chat is linked to the
    /// visitor and in writing mode.
    pub fn linked_by_link(&self, first_name: &str, login: &str) -> String {
        let (name, login) = (escape(first_name), escape(login));
        match self.language {
            Language::En => format!(
                "Hello, {name}! This chat is now connected to your conversation with support \
                 (<b>{login}</b>), no password needed. Write here; the answers come to this chat."
            ),
            Language::Ru => format!(
                "Здравствуйте, {name}! Этот чат подключён к вашему разговору с поддержкой \
                 (<b>{login}</b>), без пароля. Пишите здесь — ответы придут в этот чат."
            ),
        }
    }

    /// `/start <token>` with a token that is unknown, used or expired: nothing was linked.
    pub fn link_invalid(&self) -> &'static str {
        self.pick(
            "This link has expired or was used already. Open the chat on the website and press “Continue in Telegram” again, or press “Log in”.",
            "Эта ссылка устарела или уже использована. Откройте чат на сайте и снова нажмите «Продолжить в Telegram» или нажмите «Войти».",
        )
    }

    pub fn malformed_login(&self) -> &'static str {
        self.pick(
            "A login is <b>id</b> followed by your number, e.g. id123. Press “Log in” to try again.",
            "Логин — это <b>id</b> и ваш номер, например id123. Нажмите «Войти», чтобы попробовать снова.",
        )
    }

    pub fn unknown_login(&self, login: &str) -> String {
        let login = escape(login);
        match self.language {
            Language::En => {
                format!("There is no user <b>{login}</b>. Press “Log in” to try again.")
            }
            Language::Ru => {
                format!(
                    "Пользователь <b>{login}</b> не найден. Нажмите «Войти», чтобы попробовать снова."
                )
            }
        }
    }

    pub fn wrong_password(&self) -> &'static str {
        self.pick(
            "Wrong password. Press “Log in” to try again.",
            "Неверный пароль. Нажмите «Войти», чтобы попробовать снова.",
        )
    }

    pub fn wrong_credentials(&self) -> &'static str {
        self.pick(
            "Wrong login or password. Press “Log in” to try again.",
            "Неверный логин или пароль. Нажмите «Войти», чтобы попробовать снова.",
        )
    }

    pub fn too_many_attempts(&self) -> &'static str {
        self.pick(
            "Too many failed attempts to log in. Please try again in a few minutes.",
            "Слишком много неудачных попыток входа. Попробуйте через несколько минут.",
        )
    }

    pub fn writing(&self) -> &'static str {
        self.pick(
            "Write your message: support will answer here. Press “Back” to return to the menu.",
            "Напишите сообщение: поддержка ответит здесь. Нажмите «Назад», чтобы вернуться в меню.",
        )
    }

    pub fn not_linked(&self) -> &'static str {
        self.pick(
            "You are not logged in: press “Log in” first. Your message was not sent.",
            "Вы не вошли: сначала нажмите «Войти». Сообщение не отправлено.",
        )
    }

    pub fn press_write(&self) -> &'static str {
        self.pick(
            "To write to support, press “Write to support” first. Your message was not sent.",
            "Чтобы написать в поддержку, сначала нажмите «Написать в поддержку». Сообщение не отправлено.",
        )
    }

    /// Something support cannot take (a sticker, a voice message, a video note...).
    pub fn text_only(&self) -> &'static str {
        self.pick(
            "Only text, photos and files can be sent to support: stickers, voice and video messages are not delivered.",
            "В поддержку можно отправить только текст, фото и файлы: стикеры, голосовые и видеосообщения не доставляются.",
        )
    }

    pub fn text_only_login(&self) -> &'static str {
        self.pick(
            "Please type it as text.",
            "Пожалуйста, введите его текстом.",
        )
    }

    pub fn too_long(&self, chars: usize, limit: usize) -> String {
        match self.language {
            Language::En => format!(
                "The message is too long ({chars} characters; at most {limit}). It was not sent: please split it."
            ),
            Language::Ru => format!(
                "Сообщение слишком длинное ({chars} символов, можно не больше {limit}). Оно не отправлено: разделите его на части."
            ),
        }
    }

    pub fn unavailable(&self) -> &'static str {
        self.pick(
            "Support is not reachable right now. Nothing was sent: please try again in a minute.",
            "Поддержка сейчас недоступна. Ничего не отправлено: попробуйте через минуту.",
        )
    }

    /// A file over what Telegram lets a bot download or the core takes, `limit` bytes.
    pub fn file_too_large(&self, limit: u64) -> String {
        let limit = human_size(limit);
        match self.language {
            Language::En => format!("This file is too large (max {limit}); nothing was sent."),
            Language::Ru => {
                format!("Файл слишком большой (не больше {limit}); ничего не отправлено.")
            }
        }
    }

    /// A file of a type the core does not take (`content_type` as it sniffed it).
    pub fn file_type_refused(&self, content_type: &str) -> String {
        let content_type = escape(content_type);
        match self.language {
            Language::En => {
                format!("Files of this type ({content_type}) cannot be sent; nothing was sent.")
            }
            Language::Ru => format!(
                "Файлы такого типа ({content_type}) нельзя отправить; ничего не отправлено."
            ),
        }
    }

    /// A file that could not be passed on (Telegram or the core's storage failed).
    pub fn file_failed(&self) -> &'static str {
        self.pick(
            "The file could not be sent; nothing was sent. Please try again in a minute.",
            "Не удалось отправить файл; ничего не отправлено. Попробуйте через минуту.",
        )
    }

    /// Said once in a group the bot is added to.
    pub fn private_only(&self) -> &'static str {
        self.pick(
            "I only talk in private chats. To write to support, open a private chat with me.",
            "Я общаюсь только в личных чатах. Чтобы написать в поддержку, откройте личный чат со мной.",
        )
    }

    /// In a staff topic, to a Telegram user paired with no admin: how to be paired.
    pub fn staff_not_linked(&self, telegram_user_id: i64) -> String {
        let command =
            format!("<code>socketgram admin link-telegram &lt;login&gt; {telegram_user_id}</code>");
        match self.language {
            Language::En => format!(
                "You are not paired with a support account, so nothing was sent to the visitor. \
                 An administrator can pair you with:\n{command}"
            ),
            Language::Ru => format!(
                "Вы не связаны с учётной записью поддержки, поэтому посетителю ничего не отправлено. \
                 Администратор может связать вас командой:\n{command}"
            ),
        }
    }

    /// `/resolve` done.
    pub fn staff_resolved(&self) -> &'static str {
        self.pick("Resolved.", "Решено.")
    }

    /// `/assign` done.
    pub fn staff_assigned(&self, login: &str) -> String {
        let login = escape(login);
        match self.language {
            Language::En => format!("Assigned to <b>{login}</b>."),
            Language::Ru => format!("Назначено: <b>{login}</b>."),
        }
    }

    /// `/note` done.
    pub fn staff_noted(&self) -> &'static str {
        self.pick("Note added.", "Заметка добавлена.")
    }

    /// `/note` without a text.
    pub fn staff_note_empty(&self) -> &'static str {
        self.pick(
            "Write the note after the command, e.g. <code>/note call back tomorrow</code>.",
            "Напишите заметку после команды, например <code>/note перезвонить завтра</code>.",
        )
    }

    /// A staff command or reply the core refused, with its reason.
    pub fn staff_refused(&self, why: &str) -> String {
        let why = escape(why);
        match self.language {
            Language::En => format!("Not done: {why}"),
            Language::Ru => format!("Не выполнено: {why}"),
        }
    }

    /// A staff file that did not go to the visitor (`why` is HTML already).
    pub fn staff_not_sent(&self, why: &str) -> String {
        match self.language {
            Language::En => format!("Not sent to the visitor: {why}"),
            Language::Ru => format!("Посетителю не отправлено: {why}"),
        }
    }

    /// A staff file that could not be passed on (Telegram or the core's storage failed).
    pub fn staff_file_failed(&self) -> &'static str {
        self.pick(
            "the file could not be passed on. Please try again in a minute.",
            "файл не удалось передать. Попробуйте через минуту.",
        )
    }

    /// A sticker, a voice message... written in a staff topic.
    pub fn staff_text_only(&self) -> &'static str {
        self.pick(
            "Only text, photos and files reach the visitor; this was not sent.",
            "Посетителю доходят только текст, фото и файлы; это не отправлено.",
        )
    }

    /// Instead of a file of support's reply that Telegram would not take.
    pub fn file_not_delivered(&self, name: &str, size: u64) -> String {
        let line = escape(&file_line(name, size, None));
        match self.language {
            Language::En => format!("{line}: this file could not be delivered in Telegram."),
            Language::Ru => format!("{line}: этот файл не удалось доставить в Telegram."),
        }
    }

    /// The header line of an admin's reply, as plain text ("answer from <admin>:").
    pub fn answer_header(&self, admin_display_name: &str) -> String {
        match self.language {
            Language::En => format!("answer from {admin_display_name}:"),
            Language::Ru => format!("ответ от {admin_display_name}:"),
        }
    }

    /// The bold header line of an admin's reply, before the (escaped) message; the header
    /// alone when there is no text (files only).
    pub fn answer(&self, admin_display_name: &str, text: &str) -> String {
        self.headed(Some(&self.answer_header(admin_display_name)), text)
    }

    /// `text` escaped, under `header` (plain text, escaped, bold) when there is one.
    pub fn headed(&self, header: Option<&str>, text: &str) -> String {
        match header.map(escape) {
            None => escape(text),
            Some(header) if text.is_empty() => format!("<b>{header}</b>"),
            Some(header) => format!("<b>{header}</b>\n{}", escape(text)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_escape_the_name_and_the_text() {
        let en = Texts::new(Language::En);
        assert_eq!(
            en.answer("Bob <Acme>", "1 < 2 & <b>bold</b>"),
            "<b>answer from Bob &lt;Acme&gt;:</b>\n1 &lt; 2 &amp; &lt;b&gt;bold&lt;/b&gt;"
        );
        let ru = Texts::new(Language::Ru);
        assert!(
            ru.answer("Оля", "привет")
                .starts_with("<b>ответ от Оля:</b>\n")
        );
        assert_eq!(en.answer("Bob", ""), "<b>answer from Bob:</b>");
    }

    #[test]
    fn file_texts_name_the_limit_and_escape() {
        let en = Texts::new(Language::En);
        assert_eq!(
            en.file_too_large(10 * 1024 * 1024),
            "This file is too large (max 10 MB); nothing was sent."
        );
        assert!(
            en.file_type_refused("text/<html>")
                .contains("text/&lt;html&gt;")
        );
        assert_eq!(
            en.file_not_delivered("a<b>.pdf", 2048),
            "📎 a&lt;b&gt;.pdf (2.0 KB): this file could not be delivered in Telegram."
        );
    }

    #[test]
    fn staff_texts_name_the_pairing_command() {
        for texts in [Texts::new(Language::En), Texts::new(Language::Ru)] {
            assert!(
                texts
                    .staff_not_linked(7_000_000_001)
                    .contains("socketgram admin link-telegram &lt;login&gt; 7000000001")
            );
        }
        let en = Texts::new(Language::En);
        assert_eq!(en.staff_refused("no <admin>"), "Not done: no &lt;admin&gt;");
    }

    #[test]
    fn greetings_escape_the_first_name() {
        let en = Texts::new(Language::En);
        assert_eq!(
            en.greeting("<i>Ann</i>", "Acme"),
            "Hello, &lt;i&gt;Ann&lt;/i&gt;! This is the <b>Acme</b> support bot."
        );
    }

    #[test]
    fn button_labels_differ_within_a_language() {
        for texts in [Texts::new(Language::En), Texts::new(Language::Ru)] {
            let labels = [
                texts.button_login(),
                texts.button_contacts(),
                texts.button_write(),
                texts.button_back(),
            ];
            let unique: std::collections::HashSet<_> = labels.iter().collect();
            assert_eq!(unique.len(), labels.len());
        }
    }
}
