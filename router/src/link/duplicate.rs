//! Two links between one pair of routers (each dialled the other at about the same
//! time): both routers must keep the same one and close the other, without talking
//! about it. The rule: keep the link dialled by the router whose id sorts first.
//! (OpenZiti keeps the link with the lower link id, `router/link/link_registry.go`;
//! router ids are what both sides know for certain about both links, since each side
//! names the link it dialled on its own.)

/// Which of two links between routers `a` and `b` both keep: `true` to keep the link
/// `dialler` dialled. Both routers, asking about either link, get answers that keep
/// exactly one of the two.
pub fn keep_link_dialled_by(dialler: &str, a: &str, b: &str) -> bool {
    let first = if a <= b { a } else { b };
    dialler == first
}

#[cfg(test)]
mod tests {
    use super::keep_link_dialled_by;

    #[test]
    fn exactly_one_of_the_two_links_is_kept_whichever_side_asks() {
        for (a, b) in [("r1", "r2"), ("r2", "r1"), ("edge-b", "edge-a")] {
            let kept_a = keep_link_dialled_by(a, a, b);
            let kept_b = keep_link_dialled_by(b, a, b);
            assert_ne!(kept_a, kept_b, "{a} {b}");
            // The other router, asking with the pair the other way round, agrees.
            assert_eq!(keep_link_dialled_by(a, b, a), kept_a);
            assert_eq!(keep_link_dialled_by(b, b, a), kept_b);
        }
    }
}
