//! Which URLs handed over in a provider's answer may receive the provider key.
//!
//! Asynchronous providers answer with the addresses to poll and cancel a job at; the gateway
//! sends its key there only when the address is on the configured base URL's host, or, for a
//! base URL on the provider's own domain (`api.bfl.ai`), on another host of that domain
//! (`api.eu1.bfl.ai`). A base URL elsewhere (a proxy, a shared hosting domain) is never widened:
//! its neighbours are not the provider.

/// The scheme and authority (`host[:port]`, lower case) of an absolute http(s) URL without
/// credentials.
fn origin(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let scheme = scheme.to_ascii_lowercase();
    let fine = (scheme == "https" || scheme == "http") && !authority.is_empty() && !authority.contains('@');
    fine.then(|| (scheme, authority.to_ascii_lowercase()))
}

/// Whether `host` is `domain` or a host under it.
fn within(host: &str, domain: &str) -> bool {
    host == domain || host.strip_suffix(domain).is_some_and(|sub| sub.len() > 1 && sub.ends_with('.'))
}

/// Whether the key may go to `url`: over https (or the base URL's own scheme), on the base URL's
/// host, or on any host of `domain` (the provider's, such as `replicate.com`) when the base URL
/// itself is on that domain.
pub fn same_site(base: &str, url: &str, domain: &str) -> bool {
    let (Some((base_scheme, base_host)), Some((scheme, host))) = (origin(base), origin(url)) else { return false };
    if scheme != "https" && scheme != base_scheme {
        return false;
    }
    host == base_host || (scheme == "https" && within(&base_host, domain) && within(&host, domain))
}

#[cfg(test)]
mod tests {
    use super::same_site;

    #[test]
    fn the_key_goes_to_the_base_host_and_the_providers_own_domain_only() {
        let base = "https://api.replicate.com/v1";
        let site = "replicate.com";
        assert!(same_site(base, "https://api.replicate.com/v1/predictions/x", site));
        assert!(same_site(base, "https://stream.replicate.com/v1/files/x", site));
        assert!(!same_site(base, "https://replicate.com.evil.example/x", site));
        assert!(!same_site(base, "https://evilreplicate.com/x", site));
        assert!(!same_site(base, "https://user@api.replicate.com/x", site));
        assert!(!same_site(base, "ftp://api.replicate.com/x", site));
        assert!(!same_site(base, "http://stream.replicate.com/x", site), "plain http leaves the base's host");
        assert!(same_site("http://127.0.0.1:8787/replicate/v1", "http://127.0.0.1:8787/replicate/v1/predictions/x", site));
        assert!(!same_site("http://127.0.0.1:8787/replicate/v1", "http://127.0.0.1:9999/x", site));
        assert!(!same_site("http://localhost:8787/v1", "http://other:8787/x", site));
    }

    #[test]
    fn a_base_url_off_the_providers_domain_is_not_widened_to_its_neighbours() {
        assert!(!same_site("https://imagegate-proxy.herokuapp.com/v1", "https://attacker.herokuapp.com/x", "bfl.ai"));
        assert!(!same_site("https://proxy.example.com/bfl/v1", "https://api.bfl.ai/v1/get_result", "bfl.ai"));
        assert!(same_site("https://proxy.example.com/bfl/v1", "https://proxy.example.com/v1/get_result", "bfl.ai"));
        assert!(same_site("https://api.bfl.ai/v1", "https://api.eu1.bfl.ai/v1/get_result?id=1", "bfl.ai"));
        assert!(same_site("https://api.eu.bfl.ai/v1", "https://api.us1.bfl.ai/v1/get_result?id=1", "bfl.ai"));
    }
}
