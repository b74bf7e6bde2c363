//! What a URL handed over in a provider's answer may be used for.
//!
//! Every such URL is untrusted. It is parsed with the WHATWG URL parser (the `url` crate, the
//! same standard `fetch` follows, so `\` reads as `/` here exactly as it does on the wire), and
//! only the parsed scheme, host and port are compared; no decision is made on the text.
//!
//! - **The provider key** ([`same_site`]) goes to a poll or cancel address only when it has the
//!   base URL's origin, or, for a base URL on the provider's own domain (`api.bfl.ai`), when it
//!   is another host of that domain (`api.eu1.bfl.ai`) over https on the default port. A base URL
//!   elsewhere (a proxy, a shared hosting domain) is never widened: its neighbours are not the
//!   provider.
//! - **Image downloads** ([`download_url`]) go without credentials, over https, to a host name
//!   that is public: never an IP literal, `localhost`, or a name of a private namespace (`.local`,
//!   `.internal`, …). A provider's `download_hosts` narrows that to the hosts it lists, and may
//!   name an exact origin (`http://127.0.0.1:9000`, for a local mock) that is then allowed as is.
//!   Each redirect hop is checked again.

use url::{Host, Url};

/// Suffixes of names that never leave a private network.
const PRIVATE_SUFFIXES: [&str; 6] = [".localhost", ".local", ".internal", ".lan", ".home.arpa", ".localdomain"];

/// Whether `host` is `domain` or a host under it.
fn within(host: &str, domain: &str) -> bool {
    host == domain || host.strip_suffix(domain).is_some_and(|sub| sub.len() > 1 && sub.ends_with('.'))
}

/// The parsed URL when it is http(s) without credentials.
fn parse_web(url: &str) -> Option<Url> {
    let url = Url::parse(url).ok()?;
    let plain = matches!(url.scheme(), "https" | "http") && url.username().is_empty() && url.password().is_none();
    plain.then_some(url)
}

/// The host name of `url` when it is a domain name (not an IP literal), without trailing dots.
fn domain_of(url: &Url) -> Option<&str> {
    match url.host()? {
        Host::Domain(name) => Some(name.trim_end_matches('.')),
        Host::Ipv4(_) | Host::Ipv6(_) => None,
    }
}

/// Whether the key may go to `url`: on the base URL's origin, or on another https host of
/// `domain` (the provider's, such as `replicate.com`) when the base URL itself is on that domain.
pub fn same_site(base: &str, url: &str, domain: &str) -> bool {
    let (Some(base), Some(url)) = (parse_web(base), parse_web(url)) else { return false };
    if url.origin() == base.origin() {
        return true;
    }
    let on_domain = |u: &Url| u.scheme() == "https" && u.port().is_none() && domain_of(u).is_some_and(|host| within(host, domain));
    on_domain(&base) && on_domain(&url)
}

/// Whether `host` is a public DNS name: labels that are not empty, at least two, a last one that
/// is not a number (`127.0.0.1..` is an address in disguise), and not `localhost` or under a
/// private namespace.
fn public_name(host: &str) -> bool {
    let labels: Vec<&str> = host.split('.').collect();
    let numeric = |label: &str| {
        label.bytes().all(|b| b.is_ascii_digit())
            || label.strip_prefix("0x").or(label.strip_prefix("0X")).is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    let numeric_top = labels.last().is_some_and(|top| numeric(top));
    labels.len() > 1
        && labels.iter().all(|label| !label.is_empty())
        && !numeric_top
        && host != "localhost"
        && !PRIVATE_SUFFIXES.iter().any(|suffix| host.ends_with(suffix))
}

/// One entry of a provider's `download_hosts`.
enum Allowed<'a> {
    /// `cdn.example.com`: that host, over https.
    Host(&'a str),
    /// `*.example.com`: any host under `example.com`, over https.
    Under(&'a str),
    /// `http://127.0.0.1:9000`: exactly that origin, whatever its host.
    Origin(Url),
}

fn allowed(entry: &str) -> Result<Allowed<'_>, String> {
    let bad = || format!("'{entry}' is not a host ('cdn.example.com'), a wildcard ('*.example.com') or an origin ('http://127.0.0.1:9000')");
    if entry.contains("://") {
        let origin = parse_web(entry).ok_or_else(bad)?;
        let bare = matches!(origin.path(), "" | "/") && origin.query().is_none() && origin.fragment().is_none();
        return if bare && origin.host().is_some() { Ok(Allowed::Origin(origin)) } else { Err(bad()) };
    }
    let (wildcard, name) = match entry.strip_prefix("*.") {
        Some(name) => (true, name),
        None => (false, entry),
    };
    let is_name = name.split('.').all(|label| !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if !is_name || name.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(bad());
    }
    if !public_name(name) {
        return Err(format!("'{entry}' is not a public host name; to allow a local server, name its origin (e.g. 'http://{name}:9000')"));
    }
    Ok(if wildcard { Allowed::Under(name) } else { Allowed::Host(name) })
}

/// Checks a provider's `download_hosts` entry when the configuration loads.
pub fn check_download_host(entry: &str) -> Result<(), String> {
    allowed(&entry.to_ascii_lowercase()).map(|_| ())
}

/// The parsed URL when the gateway may call back `url` (a webhook) because `hosts` allows it:
/// the same entries as `download_hosts`, but an empty list allows nothing.
pub fn callback_url(url: &str, hosts: &[String]) -> Result<Url, String> {
    if hosts.is_empty() {
        return Err("this gateway allows no callback hosts".to_owned());
    }
    download_url(url, hosts).map_err(|_| "the URL is not https on a host this gateway allows, nor an origin it lists".to_owned())
}

/// The parsed URL when the gateway may download an image from it (see the module's rules), or
/// why not, in words that can be shown (the URL is the provider's, not a secret).
pub fn download_url(url: &str, download_hosts: &[String]) -> Result<Url, String> {
    let refused = |why: &str| Err(format!("the image URL is not one the gateway downloads from ({why})"));
    let Some(parsed) = parse_web(url) else { return refused("not an http(s) URL without credentials") };
    let origin = parsed.origin();
    // A listed host is that host over https on its default port; another port is another service.
    let listed = |https_host: &dyn Fn(&str) -> bool| parsed.scheme() == "https" && parsed.port().is_none() && domain_of(&parsed).is_some_and(https_host);
    if download_hosts.is_empty() {
        return match domain_of(&parsed) {
            _ if parsed.scheme() != "https" => refused("not https"),
            None => refused("an IP address, not a host name"),
            Some(host) if !public_name(host) => refused("not a public host name"),
            Some(_) => Ok(parsed),
        };
    }
    let matches = download_hosts.iter().filter_map(|entry| allowed(entry).ok()).any(|entry| match entry {
        Allowed::Origin(allowed) => allowed.origin() == origin,
        Allowed::Host(name) => listed(&|host| host.eq_ignore_ascii_case(name)),
        Allowed::Under(name) => listed(&|host| host.len() > name.len() && within(&host.to_ascii_lowercase(), name)),
    });
    if matches {
        Ok(parsed)
    } else {
        refused("not on the provider's download_hosts")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_goes_to_the_base_origin_and_the_providers_own_domain_only() {
        let base = "https://api.replicate.com/v1";
        let site = "replicate.com";
        assert!(same_site(base, "https://api.replicate.com/v1/predictions/x", site));
        assert!(same_site(base, "https://stream.replicate.com/v1/files/x", site));
        assert!(same_site(base, "HTTPS://API.Replicate.COM/v1/x", site), "compared after parsing");
        assert!(!same_site(base, "https://replicate.com.evil.example/x", site));
        assert!(!same_site(base, "https://evilreplicate.com/x", site));
        assert!(!same_site(base, "https://user@api.replicate.com/x", site));
        assert!(!same_site(base, "https://api.replicate.com:8443/x", site), "another port is another service");
        assert!(!same_site(base, "ftp://api.replicate.com/x", site));
        assert!(!same_site(base, "http://stream.replicate.com/x", site), "plain http leaves the base's origin");
        assert!(same_site("http://127.0.0.1:8787/replicate/v1", "http://127.0.0.1:8787/replicate/v1/predictions/x", site));
        assert!(!same_site("http://127.0.0.1:8787/replicate/v1", "http://127.0.0.1:9999/x", site));
        assert!(!same_site("http://127.0.0.1:8787/replicate/v1", "https://127.0.0.1:8787/x", site), "another scheme is another origin");
        assert!(!same_site("http://localhost:8787/v1", "http://other:8787/x", site));
    }

    #[test]
    fn a_backslash_does_not_smuggle_a_foreign_host_past_the_check() {
        // A WHATWG parser (and so `fetch`) reads `\` as `/`: the host is evil.example.
        let base = "https://api.bfl.ai/v1";
        for url in [
            r"https://evil.example\.bfl.ai/v1/get_result?id=t1",
            r"https://evil.example\\api.bfl.ai/v1/get_result",
            "https://evil.example%5C.bfl.ai/v1/get_result",
            "https://evil.example#.bfl.ai/v1/get_result",
            "https://evil.example?.bfl.ai/v1/get_result",
            "https://api.bfl.ai@evil.example/v1/get_result",
            "https://evil.example/.bfl.ai",
            "https://bfl.ai.evil.example/v1",
        ] {
            assert!(!same_site(base, url, "bfl.ai"), "{url}");
        }
        assert_eq!(Url::parse(r"https://evil.example\.bfl.ai/v1").unwrap().host_str(), Some("evil.example"));
    }

    #[test]
    fn a_base_url_off_the_providers_domain_is_not_widened_to_its_neighbours() {
        assert!(!same_site("https://imagegate-proxy.herokuapp.com/v1", "https://attacker.herokuapp.com/x", "bfl.ai"));
        assert!(!same_site("https://proxy.example.com/bfl/v1", "https://api.bfl.ai/v1/get_result", "bfl.ai"));
        assert!(same_site("https://proxy.example.com/bfl/v1", "https://proxy.example.com/v1/get_result", "bfl.ai"));
        assert!(same_site("https://api.bfl.ai/v1", "https://api.eu1.bfl.ai/v1/get_result?id=1", "bfl.ai"));
        assert!(same_site("https://api.eu.bfl.ai/v1", "https://api.us1.bfl.ai/v1/get_result?id=1", "bfl.ai"));
    }

    #[test]
    fn downloads_go_to_public_https_hosts_only() {
        let ok = |url: &str| download_url(url, &[]).is_ok();
        assert!(ok("https://delivery-us1.bfl.ai/results/a.jpeg?sig=x"));
        assert!(ok("https://replicate.delivery/xezq/out-0.webp"));
        assert!(ok("https://images.example.xxx/a.png"), "a letters-only top-level domain is a name");
        for url in [
            "http://replicate.delivery/out.png",
            "https://127.0.0.1/a.png",
            "https://2130706433/a.png",
            "https://0x7f.1/a.png",
            "https://[::1]/a.png",
            "https://169.254.169.254/latest/meta-data",
            "https://10.0.0.8/a.png",
            "https://localhost/a.png",
            "https://printer.local/a.png",
            "https://metadata.google.internal/computeMetadata/v1",
            "https://intranet/a.png",
            "https://127.0.0.1../a.png",
            "https://localhost../a.png",
            "https://metadata.google.internal../computeMetadata/v1",
            "https://printer.local../a.png",
            "https://cdn..example.com/a.png",
            "https://user:pw@cdn.example.com/a.png",
            "file:///etc/passwd",
            "data:image/png;base64,AAAA",
            "not a url",
        ] {
            assert!(!ok(url), "{url}");
        }
        assert!(download_url("http://10.0.0.8/a.png", &[]).unwrap_err().contains("not https"));
    }

    #[test]
    fn download_hosts_narrow_downloads_and_may_name_a_local_origin() {
        let hosts = ["*.bfl.ai".to_owned(), "replicate.delivery".to_owned(), "http://127.0.0.1:9000".to_owned()];
        let ok = |url: &str| download_url(url, &hosts).is_ok();
        assert!(ok("https://delivery-eu1.bfl.ai/a.png"));
        assert!(ok("https://replicate.delivery/a.png"));
        assert!(ok("http://127.0.0.1:9000/files/a.png"));
        assert!(!ok("https://bfl.ai/a.png"), "a wildcard covers the hosts under the domain");
        assert!(!ok("https://cdn.example.com/a.png"), "not listed");
        assert!(!ok("http://127.0.0.1:9001/files/a.png"), "another port");
        assert!(!ok("http://delivery-eu1.bfl.ai/a.png"), "listed hosts are https");
        for entry in ["127.0.0.1", "localhost", "*.local", "http://h/path", "a b", "*.", "https://user@h"] {
            assert!(check_download_host(entry).is_err(), "{entry}");
        }
        for entry in ["*.bfl.ai", "replicate.delivery", "http://127.0.0.1:9000", "https://cdn.example.com"] {
            assert!(check_download_host(entry).is_ok(), "{entry}");
        }
    }
}
