//! A bucket's URL, as the operator gives it and is shown it.

use anyhow::{Result, bail};

/// A bucket's URL read, `scheme://NAME[/ROOTDIRECTORY]`: the name, and the root without
/// slashes at either end ("" for none); `what` is how the provider calls the name (a bucket, a
/// container).
pub fn split_url(url: &str, scheme: &str, what: &str) -> Result<(String, String)> {
    let Some(rest) = url.strip_prefix(&format!("{scheme}://")) else { bail!("{url} is no {scheme}:// URL") };
    let (name, root) = rest.split_once('/').unwrap_or((rest, ""));
    if name.is_empty() {
        bail!("{url} names no {what}: give {scheme}://{}/ROOTDIRECTORY", what.to_ascii_uppercase());
    }
    Ok((name.to_string(), root.trim_matches('/').to_string()))
}

/// `scheme://name/rootdirectory`, as the operator names a bucket's store (the reverse of
/// [`split_url`]).
pub fn shown_url(scheme: &str, name: &str, root: &str) -> String {
    match root.is_empty() {
        true => format!("{scheme}://{name}"),
        false => format!("{scheme}://{name}/{root}"),
    }
}
