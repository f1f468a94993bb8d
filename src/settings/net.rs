//! What every connection shares besides trust: the connect timeout, the low-speed limit, the
//! registry's deadline, and the address ranges no connection may reach.

use std::net::IpAddr;
use std::time::Duration;

use crate::error::Error;

/// `MRSI_LOW_SPEED_LIMIT`'s default, in bytes per second.
pub(crate) const LOW_SPEED_LIMIT: u64 = 1024;
/// `MRSI_LOW_SPEED_TIME`'s default, in seconds.
pub(crate) const LOW_SPEED_TIME: u64 = 30;
/// `MRSI_REGISTRY_TIMEOUT`'s default, in seconds.
pub(crate) const REGISTRY_TIMEOUT: u64 = 60;
/// How long a connection may take to open, unless a caller sets `connect_timeout`.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Limits and address ranges shared by every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetSettings {
    /// How long a connection may take to open (TCP and TLS). No variable sets it: the
    /// controller asks for its contract's 5 s.
    pub(crate) connect_timeout: Duration,
    /// `MRSI_LOW_SPEED_LIMIT` (bytes/s) and `MRSI_LOW_SPEED_TIME`: a response that brings
    /// fewer bytes than limit × time within any such time is abandoned (curl's
    /// `--speed-limit`/`--speed-time`). A limit of 0 turns the check off.
    pub(crate) low_speed_limit: u64,
    pub(crate) low_speed_time: Duration,
    /// `MRSI_REGISTRY_TIMEOUT`: each registry call, retries and body included, ends by then.
    pub(crate) registry_timeout: Duration,
    /// `MRSI_ALLOW_ADDRESSES`: ranges taken out of the built-in refused ones.
    pub(crate) allowed: Vec<Cidr>,
    /// `MRSI_REFUSE_ADDRESSES`: ranges refused besides the built-in ones.
    pub(crate) refused: Vec<Cidr>,
}

impl Default for NetSettings {
    fn default() -> NetSettings {
        NetSettings {
            connect_timeout: CONNECT_TIMEOUT,
            low_speed_limit: LOW_SPEED_LIMIT,
            low_speed_time: Duration::from_secs(LOW_SPEED_TIME),
            registry_timeout: Duration::from_secs(REGISTRY_TIMEOUT),
            allowed: Vec::new(),
            refused: Vec::new(),
        }
    }
}

/// An address range, `ADDRESS/PREFIX` (a bare address is the one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `192.0.2.0/24`, `fe80::/10`, `10.1.2.3`.
    pub(crate) fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a.trim().parse::<IpAddr>().ok()?, Some(p.trim())),
            None => (text.trim().parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|&p| p <= max)?,
            None => max,
        };
        Some(Cidr { addr, prefix })
    }

    /// Whether `ip` is in the range; IPv4 ranges also hold IPv4 addresses written as IPv6
    /// (`::ffff:a.b.c.d`, `::a.b.c.d`).
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// An IPv4 address written as IPv6 (mapped `::ffff:a.b.c.d` or compatible `::a.b.c.d`, but
/// not `::` or `::1`) as the IPv4 address it reaches; anything else as it is.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let bits = u128::from(v6);
            if bits >> 32 == 0 && bits > 1 {
                return IpAddr::V4(std::net::Ipv4Addr::from(bits as u32));
            }
            ip
        }
        v4 => v4,
    }
}

pub(super) fn read(get: &dyn Fn(&str) -> Option<String>) -> Result<NetSettings, Error> {
    let number = |var: &str, default: u64| -> Result<u64, Error> {
        match get(var) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| Error::env(var, format!("'{v}' is not a whole number"))),
        }
    };
    let seconds = |var: &str, default: u64| -> Result<Duration, Error> {
        match number(var, default)? {
            0 => Err(Error::env(var, "0 seconds: give at least 1")),
            n => Ok(Duration::from_secs(n)),
        }
    };
    let ranges = |var: &str| -> Result<Vec<Cidr>, Error> {
        let mut out = Vec::new();
        for entry in get(var).unwrap_or_default().split(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let cidr = Cidr::parse(entry).ok_or_else(|| {
                Error::env(
                    var,
                    format!("'{entry}' is not an address or ADDRESS/PREFIX"),
                )
            })?;
            out.push(cidr);
        }
        Ok(out)
    };
    Ok(NetSettings {
        connect_timeout: CONNECT_TIMEOUT,
        low_speed_limit: number("MRSI_LOW_SPEED_LIMIT", LOW_SPEED_LIMIT)?,
        low_speed_time: seconds("MRSI_LOW_SPEED_TIME", LOW_SPEED_TIME)?,
        registry_timeout: seconds("MRSI_REGISTRY_TIMEOUT", REGISTRY_TIMEOUT)?,
        allowed: ranges("MRSI_ALLOW_ADDRESSES")?,
        refused: ranges("MRSI_REFUSE_ADDRESSES")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_hold_their_addresses_in_every_spelling() {
        let r = Cidr::parse("169.254.0.0/16").unwrap();
        for ip in [
            "169.254.169.254",
            "::ffff:169.254.169.254",
            "::169.254.169.254",
        ] {
            assert!(r.contains(ip.parse().unwrap()), "{ip}");
        }
        assert!(!r.contains("169.253.255.255".parse().unwrap()));
        let r = Cidr::parse("fe80::/10").unwrap();
        assert!(r.contains("febf::1".parse().unwrap()));
        assert!(!r.contains("fec0::1".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(
            Cidr::parse("10.0.0.1")
                .unwrap()
                .contains("10.0.0.1".parse().unwrap())
        );
        for bad in ["10.0.0.0/33", "host", "10.0.0/8", "::/129"] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn values_are_read_and_bad_ones_name_the_variable() {
        let get = |vars: &'static [(&str, &str)]| {
            move |k: &str| vars.iter().find(|v| v.0 == k).map(|v| v.1.to_string())
        };
        assert_eq!(read(&get(&[])).unwrap(), NetSettings::default());
        let s = read(&get(&[
            ("MRSI_LOW_SPEED_LIMIT", "0"),
            ("MRSI_LOW_SPEED_TIME", "2"),
            ("MRSI_REFUSE_ADDRESSES", "127.0.0.0/8, ::1"),
        ]))
        .unwrap();
        assert_eq!(s.low_speed_limit, 0);
        assert_eq!(s.low_speed_time, Duration::from_secs(2));
        assert_eq!(s.refused.len(), 2);
        let e = read(&get(&[("MRSI_REGISTRY_TIMEOUT", "1m")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value in MRSI_REGISTRY_TIMEOUT: '1m' is not a whole number"
        );
        let e = read(&get(&[("MRSI_ALLOW_ADDRESSES", "169.254.0.0/99")])).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid value in MRSI_ALLOW_ADDRESSES"),
            "{e}"
        );
    }
}
