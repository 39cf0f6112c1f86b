//! A minimal SMTP receiver on 127.0.0.1 for the email channel's tests.
//!
//! It speaks enough of RFC 5321 for a real client (lettre): the greeting,
//! EHLO/HELO, AUTH PLAIN, MAIL, RCPT, DATA (with dot-unstuffing), RSET, NOOP
//! and QUIT, over real TCP connections, and keeps every transaction it saw.
//! How it answers is chosen per server ([`Answer`]) to exercise the
//! channel's handling of temporary and permanent refusals.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Accepts every mail.
    Accept,
    /// Answers `451` after the data of each message's first attempt (by its
    /// Message-ID), accepts the next: a temporary failure, then success.
    TempFailFirstAttempt,
    /// Answers `550` to every recipient: a permanent refusal.
    RejectRecipients,
}

/// A mail the server accepted.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent (headers and body), CRLF line ends, unstuffed.
    pub data: String,
}

impl Mail {
    /// The (unfolded) value of header `name`, case-insensitive.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        let mut unfolded: Vec<String> = Vec::new();
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some(last) = unfolded.last_mut() {
                    last.push(' ');
                    last.push_str(line.trim_start());
                }
            } else {
                unfolded.push(line.to_string());
            }
        }
        unfolded.into_iter().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    }

    /// The body, decoded from quoted-printable when it is so encoded.
    pub fn body(&self) -> String {
        let body = self
            .data
            .split_once("\r\n\r\n")
            .map(|(_, body)| body)
            .unwrap_or_default();
        let quoted = self
            .header("Content-Transfer-Encoding")
            .is_some_and(|e| e.eq_ignore_ascii_case("quoted-printable"));
        if quoted {
            decode_quoted_printable(body)
        } else {
            body.to_string()
        }
    }
}

/// RFC 2045 quoted-printable: `=` at a line end joins lines, `=XX` is a byte.
fn decode_quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 3 <= bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(byte) = u8::from_str_radix(hex, 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the server saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// `MAIL FROM` commands (one per transaction the client started).
    pub transactions: usize,
    /// Message-IDs of every message whose data was sent, accepted or not.
    pub data_attempts: Vec<String>,
    /// Accepted mails.
    pub mails: Vec<Mail>,
    /// `(user, password)` of each successful AUTH.
    pub logins: Vec<(String, String)>,
}

/// A running receiver.
pub struct SmtpServer {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

impl SmtpServer {
    /// Listens on an ephemeral loopback port. With `login`, AUTH PLAIN is
    /// offered and must succeed with those credentials before MAIL.
    pub async fn start(answer: Answer, login: Option<(&str, &str)>) -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let login = login.map(|(u, p)| (u.to_string(), p.to_string()));
        let state = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (state, login) = (Arc::clone(&state), login.clone());
                tokio::spawn(async move {
                    // A client hanging up mid-session just ends it.
                    let _ = session(stream, answer, login, state).await;
                });
            }
        });
        SmtpServer { addr, seen }
    }

    /// What it saw so far.
    pub fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().expect("lock")
    }
}

/// The address inside `<...>` of a MAIL or RCPT argument.
fn path(argument: &str) -> String {
    argument
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(address, _)| address.to_string())
        .unwrap_or_default()
}

async fn session(
    stream: TcpStream,
    answer: Answer,
    login: Option<(String, String)>,
    seen: Arc<Mutex<Seen>>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 test-smtp ESMTP ready\r\n").await?;
    let mut authenticated = login.is_none();
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end_matches(['\r', '\n']);
        let (verb, argument) = command.split_once(' ').unwrap_or((command, ""));
        let reply: String = match verb.to_ascii_uppercase().as_str() {
            "EHLO" => {
                if login.is_some() {
                    "250-test-smtp\r\n250-AUTH PLAIN\r\n250 8BITMIME".into()
                } else {
                    "250-test-smtp\r\n250 8BITMIME".into()
                }
            }
            "HELO" => "250 test-smtp".into(),
            "AUTH" => {
                let (mechanism, initial) = argument.split_once(' ').unwrap_or((argument, ""));
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(initial.trim())
                    .unwrap_or_default();
                let parts: Vec<String> = decoded
                    .split(|b| *b == 0)
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect();
                match (&login, mechanism.eq_ignore_ascii_case("PLAIN"), &parts[..]) {
                    (Some((user, password)), true, [_, u, p]) if u == user && p == password => {
                        authenticated = true;
                        seen.lock()
                            .expect("lock")
                            .logins
                            .push((u.clone(), p.clone()));
                        "235 2.7.0 authenticated".into()
                    }
                    _ => "535 5.7.8 authentication failed".into(),
                }
            }
            "MAIL" if !authenticated => "530 5.7.0 authentication required".into(),
            "MAIL" => {
                seen.lock().expect("lock").transactions += 1;
                from = Some(path(argument));
                to.clear();
                "250 2.1.0 ok".into()
            }
            "RCPT" if from.is_none() => "503 5.5.1 MAIL first".into(),
            "RCPT" if answer == Answer::RejectRecipients => {
                format!("550 5.1.1 <{}>: mailbox unavailable", path(argument))
            }
            "RCPT" => {
                to.push(path(argument));
                "250 2.1.5 ok".into()
            }
            "DATA" if to.is_empty() => "503 5.5.1 no valid recipients".into(),
            "DATA" => {
                write
                    .write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" {
                        break;
                    }
                    // Dot-unstuffing (RFC 5321 4.5.2).
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                let mail = Mail {
                    from: from.take().unwrap_or_default(),
                    to: std::mem::take(&mut to),
                    data,
                };
                let id = mail.header("Message-ID").unwrap_or_default();
                let mut seen = seen.lock().expect("lock");
                let first = !seen.data_attempts.contains(&id);
                seen.data_attempts.push(id);
                if answer == Answer::TempFailFirstAttempt && first {
                    "451 4.3.0 temporary failure, try again later".into()
                } else {
                    seen.mails.push(mail);
                    "250 2.0.0 queued".into()
                }
            }
            "RSET" => {
                from = None;
                to.clear();
                "250 2.0.0 ok".into()
            }
            "NOOP" => "250 2.0.0 ok".into(),
            "QUIT" => {
                write.write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(());
            }
            _ => "502 5.5.2 command not recognized".into(),
        };
        write.write_all(reply.as_bytes()).await?;
        write.write_all(b"\r\n").await?;
    }
}
