//! Every text the bot shows, in English and Russian (LEGACY.md §7), in one place. Texts are
//! Telegram HTML: whatever comes from users, admins or the core is escaped here, with
//! [`escape`], and nowhere else.

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

    pub fn text_only(&self) -> &'static str {
        self.pick(
            "Only text can be sent to support: photos, stickers, files and voice messages are not delivered.",
            "В поддержку можно отправить только текст: фото, стикеры, файлы и голосовые сообщения не доставляются.",
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

    /// The bold header line of an admin's reply, before the (escaped) message.
    pub fn answer(&self, admin_display_name: &str, text: &str) -> String {
        let name = escape(admin_display_name);
        let header = match self.language {
            Language::En => format!("answer from {name}:"),
            Language::Ru => format!("ответ от {name}:"),
        };
        format!("<b>{header}</b>\n{}", escape(text))
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
