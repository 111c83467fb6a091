//! What can go wrong in a failover, typed: an AWS call (with the kind of
//! failure AWS reported: throttled, not found, denied, other), the journal,
//! a plan that cannot be made, a verification that did not pass, a DNS
//! lookup. Each error's [`FailoverError::kind`] is also its metrics label
//! (`regionguard_failover_errors_total{kind}`).

use aws_sdk_route53::config::http::HttpResponse;
use aws_sdk_route53::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_route53::operation::RequestId;
use rg_bus::state::StateError;

use crate::plan::PlanError;

/// The kind of an AWS failure, from the error code AWS returned (or the
/// HTTP status when there is no code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsErrorKind {
    /// Rate limits: the SDK retried and AWS still said slow down.
    Throttled,
    /// The resource (zone, distribution, origin, group, service) is not there.
    NotFound,
    /// The credentials may not make the call (IAM, expired or bad keys).
    Denied,
    /// Anything else: a conflict, a bad request, a 5xx, no connection.
    Other,
}

impl AwsErrorKind {
    /// Classifies an AWS error code (e.g. `Throttling`, `NoSuchHostedZone`,
    /// `AccessDeniedException`) or, without one, its HTTP status.
    pub fn classify(code: Option<&str>, http_status: Option<u16>) -> Self {
        if let Some(code) = code.filter(|c| !c.is_empty()) {
            let c = code.to_ascii_lowercase();
            if c.contains("throttl")
                || c.contains("toomanyrequests")
                || c.contains("requestlimitexceeded")
                || c.contains("slowdown")
                || c == "priorrequestnotcomplete"
                || c.contains("ratelimit")
            {
                return Self::Throttled;
            }
            if c.contains("accessdenied")
                || c.contains("unauthorized")
                || c.contains("notauthorized")
                || c.contains("invalidclienttokenid")
                || c.contains("unrecognizedclient")
                || c.contains("expiredtoken")
                || c.contains("signaturedoesnotmatch")
                || c == "authfailure"
                || c == "missingauthenticationtoken"
            {
                return Self::Denied;
            }
            if c.starts_with("nosuch") || c.contains("notfound") {
                return Self::NotFound;
            }
            return Self::Other;
        }
        match http_status {
            Some(429) => Self::Throttled,
            Some(401 | 403) => Self::Denied,
            Some(404) => Self::NotFound,
            _ => Self::Other,
        }
    }

    /// The metrics label and the word in messages.
    pub fn label(self) -> &'static str {
        match self {
            Self::Throttled => "throttled",
            Self::NotFound => "not_found",
            Self::Denied => "denied",
            Self::Other => "aws_other",
        }
    }
}

/// An AWS call failed (after the SDK's retries).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{call}: {message}")]
pub struct AwsError {
    /// The API call, e.g. `route53:ChangeResourceRecordSets`.
    pub call: &'static str,
    /// What kind of failure.
    pub kind: AwsErrorKind,
    /// What AWS (or the connection) said.
    pub message: String,
}

impl AwsError {
    /// An error of `kind` found by regionguard itself around `call` (an
    /// origin a distribution does not have, a change never INSYNC).
    pub fn new(call: &'static str, kind: AwsErrorKind, message: impl Into<String>) -> Self {
        Self {
            call,
            kind,
            message: message.into(),
        }
    }

    /// The same error, its message prefixed with what was being done.
    pub fn about(mut self, what: impl std::fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

/// Turns an SDK error of `call` into an [`AwsError`], keeping its kind,
/// as one line: the error code, AWS's message and the request id, or,
/// when AWS was not reached, the innermost cause (no SDK debug output).
pub(crate) fn sdk<E>(call: &'static str) -> impl Fn(SdkError<E, HttpResponse>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    move |e| {
        let status = e.raw_response().map(|r| r.status().as_u16());
        let kind = AwsErrorKind::classify(e.code(), status);
        let message = match (e.code(), e.message()) {
            (Some(code), Some(m)) => format!("{code}: {}", one_line(m)),
            (Some(code), None) => code.to_owned(),
            (None, Some(m)) => one_line(m),
            (None, None) => match status {
                Some(s) => format!("HTTP {s}"),
                None => innermost(&e),
            },
        };
        let message = match e.request_id() {
            Some(id) => format!("{message} (request id {id})"),
            None => message,
        };
        AwsError {
            call,
            kind,
            message,
        }
    }
}

/// The deepest cause of an error with no AWS answer (a refused
/// connection, a timeout), with what it happened in.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        chain.push(s.to_string());
        source = s.source();
    }
    let first = chain.first().cloned().unwrap_or_default();
    let last = chain.last().cloned().unwrap_or_default();
    if chain.len() > 1 && first != last {
        one_line(&format!("{first}: {last}"))
    } else {
        one_line(&first)
    }
}

/// Whitespace (newlines included) collapsed, at most 300 characters.
fn one_line(s: &str) -> String {
    let joined = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() > 300 {
        format!("{}…", joined.chars().take(300).collect::<String>())
    } else {
        joined
    }
}

/// Why a failover (or its plan, a step, a rollback) did not go through.
#[derive(Debug, thiserror::Error)]
pub enum FailoverError {
    /// An AWS call failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The journal (the `RG_FAILOVER` bucket) could not be read or written.
    #[error("the failover journal: {0}")]
    Journal(#[from] StateError),
    /// No plan can be made.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The service runs in observe mode: it has no AWS clients.
    #[error("no AWS clients (observe mode)")]
    Observing,
    /// A failback names a failover that is not completed.
    #[error("no completed failover {0} to fail back")]
    NothingToFailBack(String),
    /// A resource differs from what the plan recorded.
    #[error(
        "{resource} changed since the plan was made: the plan replaces {planned}, it is now {now}"
    )]
    Changed {
        /// The resource, e.g. `route53:Z1/api.example.com./A`.
        resource: String,
        /// The state the plan recorded (JSON, or "nothing").
        planned: String,
        /// The state now (JSON, or "nothing").
        now: String,
    },
    /// Verification did not pass in time.
    #[error("not verified within {within:?}: {missing}")]
    NotVerified {
        /// The verification deadline.
        within: std::time::Duration,
        /// What was still missing, `; `-separated.
        missing: String,
    },
    /// The DNS lookup verification makes failed.
    #[error("DNS lookup: {0}")]
    Dns(String),
    /// A step the journal or plan holds cannot be read or run.
    #[error("{0}")]
    Step(String),
    /// The health view's reader has not been known current for a while
    /// and re-reading the health stream failed: no decision is made from
    /// a view nobody can vouch for.
    #[error("the health view is stale ({last_current}) and re-reading the health stream failed: {error}")]
    StaleView {
        /// When the view was last known current, in words.
        last_current: String,
        /// Why the re-read failed.
        error: String,
    },
}

impl FailoverError {
    /// The metrics label: for AWS errors, their kind (`throttled`,
    /// `not_found`, `denied`, `aws_other`); else what failed.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Aws(e) => e.kind.label(),
            Self::Journal(_) => "journal",
            Self::Plan(_) => "plan",
            Self::Observing => "observing",
            Self::NothingToFailBack(_) => "nothing_to_fail_back",
            Self::Changed { .. } => "changed",
            Self::NotVerified { .. } => "not_verified",
            Self::Dns(_) => "dns",
            Self::Step(_) => "step",
            Self::StaleView { .. } => "stale_view",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_codes_keep_their_kind() {
        use AwsErrorKind::*;
        let cases = [
            ("Throttling", Throttled),
            ("ThrottlingException", Throttled),
            ("PriorRequestNotComplete", Throttled),
            ("TooManyRequestsException", Throttled),
            ("RequestLimitExceeded", Throttled),
            ("AccessDenied", Denied),
            ("AccessDeniedException", Denied),
            ("UnauthorizedOperation", Denied),
            ("InvalidClientTokenId", Denied),
            ("ExpiredToken", Denied),
            ("NoSuchHostedZone", NotFound),
            ("NoSuchDistribution", NotFound),
            ("NoSuchOrigin", NotFound),
            ("ClusterNotFoundException", NotFound),
            ("ServiceNotFoundException", NotFound),
            ("ResourceNotFoundException", NotFound),
            ("InvalidChangeBatch", Other),
            ("PreconditionFailed", Other),
            ("InvalidIfMatchVersion", Other),
            ("ServiceUnavailable", Other),
        ];
        for (code, kind) in cases {
            assert_eq!(
                AwsErrorKind::classify(Some(code), Some(400)),
                kind,
                "{code}"
            );
        }
    }

    #[test]
    fn without_a_code_the_http_status_decides() {
        use AwsErrorKind::*;
        assert_eq!(AwsErrorKind::classify(None, Some(429)), Throttled);
        assert_eq!(AwsErrorKind::classify(Some(""), Some(403)), Denied);
        assert_eq!(AwsErrorKind::classify(None, Some(404)), NotFound);
        assert_eq!(AwsErrorKind::classify(None, Some(500)), Other);
        assert_eq!(AwsErrorKind::classify(None, None), Other);
    }

    #[test]
    fn each_error_has_its_own_label() {
        let aws = |kind| FailoverError::Aws(AwsError::new("route53:GetChange", kind, "x"));
        let labels = [
            aws(AwsErrorKind::Throttled).kind(),
            aws(AwsErrorKind::NotFound).kind(),
            aws(AwsErrorKind::Denied).kind(),
            aws(AwsErrorKind::Other).kind(),
            FailoverError::Observing.kind(),
            FailoverError::Changed {
                resource: "r".into(),
                planned: "a".into(),
                now: "b".into(),
            }
            .kind(),
            FailoverError::Dns("x".into()).kind(),
            FailoverError::Step("x".into()).kind(),
            FailoverError::NothingToFailBack("x".into()).kind(),
        ];
        assert_eq!(
            labels,
            [
                "throttled",
                "not_found",
                "denied",
                "aws_other",
                "observing",
                "changed",
                "dns",
                "step",
                "nothing_to_fail_back"
            ]
        );
        assert_eq!(
            aws(AwsErrorKind::Denied).to_string(),
            "route53:GetChange: x",
            "the message a plan and a step show"
        );
    }
}
