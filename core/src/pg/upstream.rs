//! Logging in to the target with the real credential, sans-IO.
//!
//! The gateway, not the agent, authenticates upstream: SCRAM-SHA-256, MD5,
//! cleartext and trust are supported. The exchange is never relayed to the
//! client and never recorded (it carries the credential).

use bytes::Bytes;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};

use super::backend::Message;
use super::encode;
use super::frame::Frame;
use super::wire::Reader;

/// Where and as whom to log in.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamLogin {
    /// The database on the target.
    pub database: String,
    /// The role to log in as.
    pub user: String,
    /// The role's password; `None` for trust authentication.
    pub password: Option<String>,
}

impl std::fmt::Debug for UpstreamLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamLogin")
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Why the upstream login failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError {
    /// The target asked for a password and the gateway has none for it.
    #[error("the target asks for a password and none is configured for it")]
    NoPassword,
    /// The target asked for an authentication method the gateway lacks.
    #[error("the target asks for an unsupported authentication method ({0})")]
    Unsupported(String),
    /// The target rejected the login with an ErrorResponse.
    #[error("the target refused the login: {message} (SQLSTATE {code})")]
    Rejected {
        /// SQLSTATE.
        code: String,
        /// The target's message.
        message: String,
    },
    /// The SCRAM exchange failed (e.g. the server's proof did not verify).
    #[error("SCRAM authentication with the target failed: {0}")]
    Scram(String),
    /// The target sent something that is not valid during login.
    #[error("the target sent an unexpected or malformed message during login")]
    Protocol,
}

/// What the target told us once login completed.
#[derive(Debug, Clone)]
pub struct LoggedIn {
    /// ParameterStatus frames, to pass on to the client verbatim.
    pub parameters: Vec<Frame>,
    /// NoticeResponse frames sent during login.
    pub notices: Vec<Frame>,
    /// The target's cancel key.
    pub key: Option<(i32, i32)>,
    /// The ReadyForQuery frame that ended login.
    pub ready: Frame,
}

/// Progress of a login after one frame from the target.
#[derive(Debug)]
pub enum LoginStep {
    /// Send this to the target and keep reading.
    Send(Frame),
    /// Keep reading.
    Continue,
    /// Login is complete.
    Done(LoggedIn),
}

/// The login state machine.
pub struct Login {
    login: UpstreamLogin,
    scram: Option<ScramSha256>,
    authenticated: bool,
    parameters: Vec<Frame>,
    notices: Vec<Frame>,
    key: Option<(i32, i32)>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("login", &self.login)
            .field("scram", &self.scram.is_some())
            .field("authenticated", &self.authenticated)
            .finish_non_exhaustive()
    }
}

impl Login {
    /// Starts a login; returns the machine and the StartupMessage to send.
    /// `extra` are further startup parameters (e.g. `application_name`).
    pub fn start(login: UpstreamLogin, extra: &[(String, String)]) -> (Login, Bytes) {
        let params = [
            ("user", login.user.as_str()),
            ("database", login.database.as_str()),
        ]
        .into_iter()
        .chain(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let startup = encode::startup_message(params);
        let machine = Login {
            login,
            scram: None,
            authenticated: false,
            parameters: Vec::new(),
            notices: Vec::new(),
            key: None,
        };
        (machine, startup)
    }

    /// Handles one frame from the target.
    pub fn handle(&mut self, frame: Frame) -> Result<LoginStep, LoginError> {
        let msg = Message::parse(&frame).map_err(|_| LoginError::Protocol)?;
        match msg {
            Message::Authentication { code, data } if !self.authenticated => {
                self.authenticate(code, data)
            }
            Message::ParameterStatus { .. } if self.authenticated => {
                self.parameters.push(frame);
                Ok(LoginStep::Continue)
            }
            Message::BackendKeyData { pid, secret } if self.authenticated => {
                self.key = Some((pid, secret));
                Ok(LoginStep::Continue)
            }
            Message::NoticeResponse(_) => {
                self.notices.push(frame);
                Ok(LoginStep::Continue)
            }
            Message::ErrorResponse(fields) => Err(LoginError::Rejected {
                code: fields.get(b'C').unwrap_or("XX000").to_owned(),
                message: fields.get(b'M').unwrap_or("").to_owned(),
            }),
            // We ask for 3.0 with no protocol options; a server may still
            // tell us its newest minor version. Nothing to do.
            Message::Other(b'v') => Ok(LoginStep::Continue),
            Message::ReadyForQuery(_) if self.authenticated => Ok(LoginStep::Done(LoggedIn {
                parameters: std::mem::take(&mut self.parameters),
                notices: std::mem::take(&mut self.notices),
                key: self.key,
                ready: frame,
            })),
            _ => Err(LoginError::Protocol),
        }
    }

    fn password(&self) -> Result<&[u8], LoginError> {
        self.login
            .password
            .as_deref()
            .map(str::as_bytes)
            .ok_or(LoginError::NoPassword)
    }

    fn authenticate(&mut self, code: i32, data: &[u8]) -> Result<LoginStep, LoginError> {
        match code {
            0 => {
                self.authenticated = true;
                Ok(LoginStep::Continue)
            }
            3 => Ok(LoginStep::Send(encode::password_message(self.password()?))),
            5 => {
                let salt: [u8; 4] = data.try_into().map_err(|_| LoginError::Protocol)?;
                let hash = md5_hash(self.login.user.as_bytes(), self.password()?, salt);
                Ok(LoginStep::Send(encode::password_message(hash.as_bytes())))
            }
            10 => {
                let mut r = Reader::new(data);
                let mut offered = Vec::new();
                while let Some(m) = r.cstr().filter(|m| !m.is_empty()) {
                    offered.push(m);
                }
                if !offered.contains(&SCRAM_SHA_256) {
                    return Err(LoginError::Unsupported(format!(
                        "SASL {}",
                        offered.join(", ")
                    )));
                }
                let scram = ScramSha256::new(self.password()?, ChannelBinding::unsupported());
                let first = encode::sasl_initial_response(SCRAM_SHA_256, scram.message());
                self.scram = Some(scram);
                Ok(LoginStep::Send(first))
            }
            11 => {
                let scram = self.scram.as_mut().ok_or(LoginError::Protocol)?;
                scram
                    .update(data)
                    .map_err(|e| LoginError::Scram(e.to_string()))?;
                Ok(LoginStep::Send(encode::sasl_response(scram.message())))
            }
            12 => {
                let scram = self.scram.as_mut().ok_or(LoginError::Protocol)?;
                scram
                    .finish(data)
                    .map_err(|e| LoginError::Scram(e.to_string()))?;
                Ok(LoginStep::Continue)
            }
            2 => Err(LoginError::Unsupported("Kerberos V5".into())),
            7 | 8 => Err(LoginError::Unsupported("GSSAPI".into())),
            9 => Err(LoginError::Unsupported("SSPI".into())),
            other => Err(LoginError::Unsupported(format!("code {other}"))),
        }
    }
}
