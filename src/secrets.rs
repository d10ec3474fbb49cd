//! The secrets that come from the environment (the eSMS account keys, an
//! S3 state's AWS credentials): which variables hold them, and the one way
//! their values are scrubbed from text that leaves the process (an S3
//! error message, a webhook notification).

/// The eSMS account keys.
pub const ESMS_VARS: [&str; 2] = ["ESMS_API_KEY", "ESMS_SECRET_KEY"];

/// An S3 state's credentials.
pub const AWS_VARS: [&str; 3] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// What a scrubbed secret reads as.
pub use crate::esms::credentials::REDACTED;

/// The values of the variables `names` that are set and not blank.
pub fn from_env<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    names
        .into_iter()
        .filter_map(|name| std::env::var(name).ok())
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
        .collect()
}

/// `text` with every occurrence of each of `secrets` replaced by
/// [`REDACTED`].
pub fn scrub(text: &str, secrets: &[String]) -> String {
    secrets.iter().fold(text.to_owned(), |out, secret| {
        if !secret.is_empty() && out.contains(secret.as_str()) {
            out.replace(secret.as_str(), REDACTED)
        } else {
            out
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_occurrence_is_redacted() {
        let secrets = vec!["wJalrXUtnFEMI/K7MDENG".to_owned(), String::new()];
        assert_eq!(
            super::scrub(
                "key wJalrXUtnFEMI/K7MDENG, again wJalrXUtnFEMI/K7MDENG",
                &secrets
            ),
            "key [redacted], again [redacted]"
        );
        assert_eq!(super::scrub("nothing", &secrets), "nothing");
    }
}
