//! The picture of the network, on the metrics listener: `GET /` is one page
//! that draws the networks as switches with their endpoints, gateways, NAT to
//! the host and published ports (SVG), with live rates on the links and the
//! MAC and NAT tables beside it; it redraws itself from `GET /view.json`.
//!
//! Decisions:
//! - Everything the page needs is compiled into the binary and served by the
//!   daemon (`/`, `/page.js`, `/page.css`): it works offline, and the
//!   Content-Security-Policy allows nothing but the listener itself.
//! - The view is the controller's own views (`network ls`, `endpoint ls`,
//!   `stats`, `fdb`, `nat`) with the daemon's clock; the page computes rates
//!   from two views by that clock, so a slow or throttled browser tab still
//!   shows true rates. Nothing is kept between requests.
//! - Read-only, like `/metrics`: only GET.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use plexus::{Controller, EndpointInfo, FdbInfo, NatInfo, NetworkInfo, PortInfo};

/// Everything the page draws, at one moment.
#[derive(Debug, Default, serde::Serialize)]
pub struct View {
    /// The daemon's clock (seconds since the Unix epoch): rates are per
    /// second of this clock.
    pub time: f64,
    /// Networks.
    pub networks: Vec<NetworkInfo>,
    /// Endpoints (with their published ports).
    pub endpoints: Vec<EndpointInfo>,
    /// Per-port counters.
    pub ports: Vec<PortInfo>,
    /// Each network's MAC table, by network name.
    pub fdb: BTreeMap<String, Vec<FdbInfo>>,
    /// NAT flows.
    pub nat: Vec<NatInfo>,
    /// The switch worker's CPU seconds.
    pub worker_cpu_secs: Option<f64>,
}

impl View {
    /// Takes one from the controller, with the worker's CPU seconds.
    pub fn take(ctrl: &Controller, worker_cpu_secs: Option<f64>) -> View {
        let networks: Vec<NetworkInfo> = ctrl.networks().iter().filter_map(|n| n.info().ok()).collect();
        let fdb = networks
            .iter()
            .filter_map(|n| Some((n.name.clone(), ctrl.fdb(&n.name).ok()?)))
            .collect();
        View {
            time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            networks,
            endpoints: ctrl.endpoints().iter().filter_map(|e| e.info().ok()).collect(),
            ports: ctrl.stats().unwrap_or_default(),
            fdb,
            nat: ctrl.nat().unwrap_or_default(),
            worker_cpu_secs,
        }
    }
}

/// A file of the page: its content type and bytes, if `path` is one.
pub fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/" | "/index.html" => Some(("text/html; charset=utf-8", include_str!("page/index.html"))),
        "/page.js" => Some(("text/javascript; charset=utf-8", include_str!("page/page.js"))),
        "/page.css" => Some(("text/css; charset=utf-8", include_str!("page/page.css"))),
        _ => None,
    }
}

/// The page's Content-Security-Policy: the listener's own files and views only.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files() {
        let (kind, html) = asset("/").unwrap();
        assert!(kind.starts_with("text/html"));
        for needed in ["/page.js", "/page.css"] {
            assert!(html.contains(&format!("\"{needed}\"")), "{needed}");
            assert!(asset(needed).is_some());
        }
        // No address outside the listener: offline by construction.
        for (_, text) in ["/", "/page.js", "/page.css"].map(|p| asset(p).unwrap()) {
            // (SVG's namespace is a name, never fetched.)
            let text = text.replace("http://www.w3.org/2000/svg", "");
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "an outside URL"
            );
        }
        assert!(asset("/etc/passwd").is_none());
        let js = asset("/page.js").unwrap().1;
        assert!(js.contains("view.json"));
    }

    #[test]
    fn a_view_serializes_with_the_fields_the_page_reads() {
        let v = serde_json::to_value(View::default()).unwrap();
        let js = asset("/page.js").unwrap().1;
        for field in [
            "time",
            "networks",
            "endpoints",
            "ports",
            "fdb",
            "nat",
            "worker_cpu_secs",
        ] {
            assert!(v.get(field).is_some(), "{field}");
            assert!(js.contains(&format!("v.{field}")), "the page does not read {field}");
        }
    }
}
