//! DNS answers seen on the node (`--dns`): which names the external
//! addresses had, so a learned rule to an address outside the cluster
//! carries the name the workload asked for (`dnsNames` of the
//! NetworkNeighborhood, the reviewer's best clue).
//!
//! The eBPF capture copies each UDP datagram from port 53 that arrives at a
//! socket (up to 512 bytes); this module reads it with `simple-dns`. Only
//! answers count: a query, a truncated or unreadable message is skipped
//! (and counted by the caller).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use simple_dns::Packet;
use simple_dns::rdata::RData;

/// What one answer said: these names resolve to these addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsAnswer {
    /// The name asked for and every name of the answer's chain (CNAME
    /// targets included), lower case, without the trailing dot.
    pub names: BTreeSet<String>,
    pub addresses: Vec<IpAddr>,
}

/// Reads a DNS message. `Ok(None)`: a message that names no address (a
/// query, an answer without A or AAAA records).
pub fn parse(bytes: &[u8]) -> Result<Option<DnsAnswer>, String> {
    let packet = Packet::parse(bytes).map_err(|e| format!("not a DNS message: {e}"))?;
    let mut names = BTreeSet::new();
    let mut addresses = Vec::new();
    let name = |n: &simple_dns::Name<'_>| n.to_string().trim_end_matches('.').to_ascii_lowercase();
    for question in &packet.questions {
        names.insert(name(&question.qname));
    }
    for record in &packet.answers {
        match &record.rdata {
            RData::A(a) => {
                addresses.push(IpAddr::V4(Ipv4Addr::from(a.address)));
                names.insert(name(&record.name));
            }
            RData::AAAA(a) => {
                addresses.push(IpAddr::V6(Ipv6Addr::from(a.address)));
                names.insert(name(&record.name));
            }
            RData::CNAME(target) => {
                names.insert(name(&record.name));
                names.insert(name(&target.0));
            }
            _ => {}
        }
    }
    names.retain(|n| !n.is_empty());
    if addresses.is_empty() || names.is_empty() {
        return Ok(None);
    }
    addresses.sort();
    addresses.dedup();
    Ok(Some(DnsAnswer { names, addresses }))
}

#[cfg(test)]
mod tests {
    use simple_dns::rdata::{A, AAAA, CNAME};
    use simple_dns::{CLASS, Name, QCLASS, QTYPE, Question, ResourceRecord, TYPE};

    use super::*;

    fn answer() -> Vec<u8> {
        let mut packet = Packet::new_reply(7);
        let asked = Name::new_unchecked("API.example.com");
        let real = Name::new_unchecked("edge.example.net");
        packet.questions.push(Question::new(
            asked.clone(),
            QTYPE::TYPE(TYPE::A),
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
        packet.answers.push(ResourceRecord::new(
            asked,
            CLASS::IN,
            60,
            RData::CNAME(CNAME(real.clone())),
        ));
        packet.answers.push(ResourceRecord::new(
            real.clone(),
            CLASS::IN,
            60,
            RData::A(A {
                address: u32::from(Ipv4Addr::new(203, 0, 113, 7)),
            }),
        ));
        packet.answers.push(ResourceRecord::new(
            real,
            CLASS::IN,
            60,
            RData::AAAA(AAAA {
                address: u128::from(
                    "2001:db8::7"
                        .parse::<Ipv6Addr>()
                        .unwrap_or(Ipv6Addr::UNSPECIFIED),
                ),
            }),
        ));
        packet.build_bytes_vec().unwrap_or_default()
    }

    #[test]
    fn an_answer_names_its_addresses_with_the_asked_name_and_its_chain() {
        let parsed = parse(&answer());
        assert_eq!(
            parsed,
            Ok(Some(DnsAnswer {
                names: BTreeSet::from([
                    "api.example.com".to_string(),
                    "edge.example.net".to_string()
                ]),
                addresses: vec![
                    IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)),
                    "2001:db8::7"
                        .parse()
                        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                ],
            }))
        );
    }

    #[test]
    fn a_query_names_nothing_and_garbage_is_an_error_never_a_panic() {
        let mut query = Packet::new_query(1);
        query.questions.push(Question::new(
            Name::new_unchecked("example.com"),
            QTYPE::TYPE(TYPE::A),
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
        assert_eq!(
            parse(&query.build_bytes_vec().unwrap_or_default()),
            Ok(None)
        );
        let good = answer();
        for cut in 0..good.len() {
            let _ = parse(&good[..cut]);
        }
        assert!(parse(&[0xff; 3]).is_err());
    }
}
