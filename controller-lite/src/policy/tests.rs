//! Unit tests: selector parsing, each semantic rule (examples from the OpenZiti docs page
//! "Policies"), every query's denials, and the agreement of both evaluators on them.

use super::*;

fn roles(items: &[&str]) -> RoleSet {
    RoleSet::parse(items).unwrap()
}

fn sp(
    id: &str,
    kind: PolicyType,
    semantic: Semantic,
    ids: &[&str],
    svcs: &[&str],
) -> ServicePolicy {
    ServicePolicy {
        id: id.to_owned(),
        policy_type: kind,
        semantic,
        identity_roles: roles(ids),
        service_roles: roles(svcs),
        posture_check_roles: RoleSet::new(),
    }
}

fn erp(id: &str, semantic: Semantic, ids: &[&str], routers: &[&str]) -> EdgeRouterPolicy {
    EdgeRouterPolicy {
        id: id.to_owned(),
        semantic,
        identity_roles: roles(ids),
        edge_router_roles: roles(routers),
    }
}

fn serp(id: &str, semantic: Semantic, svcs: &[&str], routers: &[&str]) -> ServiceEdgeRouterPolicy {
    ServiceEdgeRouterPolicy {
        id: id.to_owned(),
        semantic,
        service_roles: roles(svcs),
        edge_router_roles: roles(routers),
    }
}

/// Runs `check` against both evaluators of `model`.
fn both(model: &Model, check: impl Fn(&dyn PolicyEvaluator)) {
    check(&NaiveEvaluator::new(model));
    check(&PolicyIndex::new(model));
}

use PolicyType::{Bind, Dial};
use Semantic::{AllOf, AnyOf};

// ---- selector parsing ----

#[test]
fn parses_the_three_selector_forms() {
    assert_eq!(
        RoleSelector::parse("#sales"),
        Ok(RoleSelector::Attribute("sales".into()))
    );
    assert_eq!(
        RoleSelector::parse("@jsmith-laptop"),
        Ok(RoleSelector::Entity("jsmith-laptop".into()))
    );
    assert_eq!(RoleSelector::parse("#all"), Ok(RoleSelector::All));
    // Only `#all` is special: `@all` names an entity, `#ALL` is an ordinary attribute.
    assert_eq!(
        RoleSelector::parse("@all"),
        Ok(RoleSelector::Entity("all".into()))
    );
    assert_eq!(
        RoleSelector::parse("#ALL"),
        Ok(RoleSelector::Attribute("ALL".into()))
    );
    let uuid = "@81cc68d0-700a-491f-8e98-4b43a0b30a9f";
    assert_eq!(RoleSelector::parse(uuid).unwrap().to_string(), uuid);
    assert_eq!("#eu".parse::<RoleSelector>().unwrap().to_string(), "#eu");
}

#[test]
fn rejects_malformed_selectors_with_their_text() {
    use SelectorError::*;
    let cases: &[(&str, SelectorError)] = &[
        ("", Empty),
        ("sales", MissingPrefix("sales".into())),
        ("all", MissingPrefix("all".into())),
        ("!x", MissingPrefix("!x".into())),
        ("#", EmptyName("#".into())),
        ("@", EmptyName("@".into())),
        ("##x", DoubledPrefix("##x".into())),
        ("#@x", DoubledPrefix("#@x".into())),
        ("@#x", DoubledPrefix("@#x".into())),
        (" #x", InvalidCharacter(" #x".into())),
        ("#x ", InvalidCharacter("#x ".into())),
        ("#a b", InvalidCharacter("#a b".into())),
        ("@a\tb", InvalidCharacter("@a\tb".into())),
        ("#a\u{0}", InvalidCharacter("#a\u{0}".into())),
        (" ", InvalidCharacter(" ".into())),
    ];
    for (text, expected) in cases {
        assert_eq!(
            RoleSelector::parse(text).as_ref(),
            Err(expected),
            "{text:?}"
        );
    }
    let message = RoleSelector::parse("sales").unwrap_err().to_string();
    assert!(message.contains("\"sales\""), "{message}");
}

#[test]
fn role_list_parsing() {
    let set = roles(&["#b", "@x", "#a", "#b", "@x"]);
    assert_eq!(set.attributes(), ["a", "b"]);
    assert_eq!(set.refs(), ["x"]);
    assert!(!set.includes_all());
    assert_eq!(set.to_strings(), ["#a", "#b", "@x"]);
    assert!(roles(&[]).is_empty());
    assert!(roles(&["#all"]).includes_all());
    // OpenZiti: "if using #all, it should be the only role specified".
    assert_eq!(
        RoleSet::parse(["#all", "#other"]),
        Err(SelectorError::AllNotAlone(vec![
            "#all".into(),
            "#other".into()
        ]))
    );
    assert_eq!(
        RoleSet::parse(["#ok", "bad"]),
        Err(SelectorError::MissingPrefix("bad".into()))
    );
}

#[test]
fn semantic_and_type_parsing() {
    assert_eq!("AllOf".parse(), Ok(AllOf));
    assert_eq!("anyof".parse(), Ok(AnyOf));
    assert_eq!(Semantic::default(), AllOf);
    assert_eq!(
        "OneOf".parse::<Semantic>(),
        Err(ParseValueError::Semantic("OneOf".into()))
    );
    assert_eq!("Dial".parse(), Ok(Dial));
    assert_eq!("bind".parse(), Ok(Bind));
    assert!("Host".parse::<PolicyType>().is_err());
    assert_eq!(AnyOf.to_string(), "AnyOf");
    assert_eq!(Bind.to_string(), "Bind");
}

// ---- semantic rules ----

/// The docs' example identities: `#sales`/`#eu` and friends, plus `jsmith-laptop`.
fn sales_model(semantic: Semantic, identity_roles: &[&str]) -> Model {
    let mut laptop = Identity::new("81cc68d0", &[]);
    laptop.name = "jsmith-laptop".into();
    Model {
        identities: vec![
            Identity::new("sales-na", &["sales", "north-america"]),
            Identity::new("sales-eu", &["sales", "eu"]),
            Identity::new("eng-eu", &["engineering", "eu"]),
            Identity::new("bare", &[]),
            laptop,
        ],
        services: vec![Service::new("crm", &["office"])],
        service_policies: vec![sp("p", Dial, semantic, identity_roles, &["#office"])],
        ..Model::default()
    }
}

fn dialers(model: &Model) -> Vec<String> {
    let index = PolicyIndex::new(model);
    let naive = NaiveEvaluator::new(model);
    let mut out = Vec::new();
    for i in &model.identities {
        let granted = index.can_dial(&i.id, "crm");
        assert_eq!(granted, naive.can_dial(&i.id, "crm"), "{}", i.id);
        if granted {
            out.push(i.id.clone());
        }
    }
    out
}

#[test]
fn all_of_requires_every_attribute_and_includes_refs() {
    let model = sales_model(AllOf, &["#sales", "#north-america", "@jsmith-laptop"]);
    assert_eq!(dialers(&model), ["sales-na", "81cc68d0"]);
}

#[test]
fn any_of_requires_one_attribute() {
    let model = sales_model(AnyOf, &["#sales", "#eu"]);
    assert_eq!(dialers(&model), ["sales-na", "sales-eu", "eng-eu"]);
}

#[test]
fn refs_select_under_either_semantic() {
    for semantic in [AllOf, AnyOf] {
        let model = sales_model(semantic, &["@bare", "@81cc68d0"]);
        assert_eq!(dialers(&model), ["bare", "81cc68d0"], "{semantic}");
    }
}

#[test]
fn empty_role_list_selects_nothing() {
    for semantic in [AllOf, AnyOf] {
        assert!(
            dialers(&sales_model(semantic, &[])).is_empty(),
            "{semantic}"
        );
    }
}

#[test]
fn all_selects_everything_even_without_attributes() {
    for semantic in [AllOf, AnyOf] {
        assert_eq!(
            dialers(&sales_model(semantic, &["#all"])).len(),
            5,
            "{semantic}"
        );
    }
    // Built without the "alone" check, `#all` still wins over an unmet AllOf attribute.
    let mut model = sales_model(AllOf, &[]);
    model.service_policies[0].identity_roles = RoleSet::from_selectors([
        RoleSelector::All,
        RoleSelector::Attribute("nobody-has-this".into()),
    ]);
    assert_eq!(dialers(&model).len(), 5);
}

#[test]
fn unknown_attribute_under_all_of_selects_nothing() {
    assert!(dialers(&sales_model(AllOf, &["#sales", "#mars"])).is_empty());
    assert_eq!(dialers(&sales_model(AnyOf, &["#sales", "#mars"])).len(), 2);
}

#[test]
fn refs_resolve_by_id_then_unique_name() {
    let mut a = Identity::new("id-a", &[]);
    a.name = "id-b".into(); // a's name is b's id: the id wins
    let mut b = Identity::new("id-b", &[]);
    b.name = "twin".into();
    let mut c = Identity::new("id-c", &[]);
    c.name = "twin".into();
    let mut model = sales_model(AllOf, &[]);
    model.identities = vec![a, b, c];
    let dial = |list: &[&str]| {
        let mut m = model.clone();
        m.service_policies[0].identity_roles = roles(list);
        dialers(&m)
    };
    assert_eq!(dial(&["@id-b"]), ["id-b"]);
    assert!(
        dial(&["@twin"]).is_empty(),
        "an ambiguous name selects nothing"
    );
    assert!(
        dial(&["@ghost"]).is_empty(),
        "an unknown ref selects nothing"
    );

    model.service_policies[0].identity_roles = roles(&["@twin", "@ghost", "@id-b"]);
    let errors = model.validate();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(matches!(
        &errors[0],
        ModelError::UnresolvedRef { reference, error: RefError::Unknown, .. } if reference == "ghost"
    ));
    assert!(matches!(
        &errors[1],
        ModelError::UnresolvedRef { reference, error: RefError::Ambiguous(2), .. } if reference == "twin"
    ));
    assert_eq!(resolve_ref(&model.identities, "id-b"), Ok("id-b"));
}

#[test]
fn validate_reports_duplicates_and_bad_attributes() {
    let mut model = sales_model(AllOf, &["#sales"]);
    assert!(model.validate().is_empty());
    model.identities.push(Identity::new("bare", &["#hash", ""]));
    model
        .service_policies
        .push(model.service_policies[0].clone());
    let errors = model.validate();
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(errors.contains(&ModelError::DuplicateEntityId {
        kind: EntityKind::Identity,
        id: "bare".into()
    }));
    assert!(errors.contains(&ModelError::DuplicatePolicyId {
        kind: "service policy",
        id: "p".into()
    }));
}

#[test]
fn semantic_applies_to_every_role_list_of_the_policy() {
    // OpenZiti evaluates each role list of a policy with the policy's one semantic.
    let mut model = Model {
        identities: vec![Identity::new("alice", &["eu"])],
        edge_routers: vec![
            EdgeRouter::new("er-eu", &["eu"]),
            EdgeRouter::new("er-core", &["core"]),
            EdgeRouter::new("er-both", &["eu", "core"]),
        ],
        edge_router_policies: vec![erp("erp", AllOf, &["#eu"], &["#eu", "#core"])],
        ..Model::default()
    };
    both(&model, |e| {
        assert_eq!(e.edge_routers_for_identity("alice"), ["er-both"])
    });
    model.edge_router_policies[0].semantic = AnyOf;
    both(&model, |e| {
        assert_eq!(
            e.edge_routers_for_identity("alice"),
            ["er-both", "er-core", "er-eu"]
        );
    });
}

// ---- full model: every access check, and each way it can deny ----

fn network() -> Model {
    let mut disabled = Identity::new("disabled", &["staff"]);
    disabled.disabled = true;
    Model {
        identities: vec![
            Identity::new("alice", &["staff", "eu"]),
            Identity::new("bob", &["staff", "us"]),
            Identity::new("server", &["hosts"]),
            Identity::new("guest", &[]),
            disabled,
        ],
        services: vec![
            Service::new("crm", &["office"]),
            Service::new("wiki", &["office"]),
            Service::new("vault", &["secret"]),
        ],
        edge_routers: vec![
            EdgeRouter::new("er-eu", &["eu"]),
            EdgeRouter::new("er-us", &["us"]),
            EdgeRouter::new("er-core", &["core"]),
        ],
        posture_checks: vec![
            PostureCheck::new("mfa", &["strict"]),
            PostureCheck::new("os", &["strict", "basic"]),
        ],
        service_policies: vec![
            sp("dial-office", Dial, AllOf, &["#staff"], &["#office"]),
            ServicePolicy {
                posture_check_roles: roles(&["#strict"]),
                ..sp("dial-crm-strict", Dial, AnyOf, &["#eu", "#us"], &["@crm"])
            },
            sp("bind-all", Bind, AllOf, &["#hosts"], &["#all"]),
            ServicePolicy {
                posture_check_roles: roles(&["#basic"]),
                ..sp("dial-vault", Dial, AllOf, &["@alice"], &["#secret"])
            },
        ],
        edge_router_policies: vec![
            erp("erp-eu", AnyOf, &["#eu"], &["#eu", "#core"]),
            erp("erp-staff", AnyOf, &["#staff"], &["#core"]),
            erp("erp-server", AllOf, &["@server"], &["#all"]),
        ],
        service_edge_router_policies: vec![
            serp("serp-office", AnyOf, &["#office"], &["#eu", "#us"]),
            serp("serp-vault", AllOf, &["@vault"], &["@er-core"]),
        ],
    }
}

#[test]
fn dial_and_bind_grant_and_deny() {
    both(&network(), |e| {
        assert!(e.can_dial("alice", "crm"));
        assert!(e.can_dial("bob", "wiki"));
        assert!(!e.can_dial("bob", "vault"), "service not selected for bob");
        assert!(!e.can_bind("alice", "crm"), "dial policy grants no bind");
        assert!(e.can_bind("server", "vault"));
        assert!(!e.can_dial("server", "crm"), "bind policy grants no dial");
        assert!(!e.can_dial("guest", "crm"), "identity not selected");
        assert!(!e.can_dial("disabled", "crm"), "disabled identity");
        assert!(!e.can_dial("nobody", "crm"), "unknown identity");
        assert!(!e.can_dial("alice", "nothing"), "unknown service");
        assert_eq!(e.dial_services("alice"), ["crm", "vault", "wiki"]);
        assert_eq!(e.dial_services("bob"), ["crm", "wiki"]);
        assert!(e.bind_services("alice").is_empty());
        assert_eq!(e.bind_services("server"), ["crm", "vault", "wiki"]);
        assert!(e.dial_services("guest").is_empty());
        assert!(e.dial_services("disabled").is_empty());
    });
}

#[test]
fn edge_routers_grant_and_deny() {
    both(&network(), |e| {
        assert_eq!(e.edge_routers_for_identity("alice"), ["er-core", "er-eu"]);
        assert_eq!(e.edge_routers_for_identity("bob"), ["er-core"]);
        assert_eq!(
            e.edge_routers_for_identity("server"),
            ["er-core", "er-eu", "er-us"]
        );
        assert!(e.edge_routers_for_identity("guest").is_empty(), "no policy");
        assert!(
            e.edge_routers_for_identity("disabled").is_empty(),
            "disabled"
        );
        assert_eq!(e.edge_routers_for_service("crm"), ["er-eu", "er-us"]);
        assert_eq!(e.edge_routers_for_service("vault"), ["er-core"]);
        assert!(e.edge_routers_for_service("nothing").is_empty());
    });
}

#[test]
fn session_routers_need_access_and_a_common_router() {
    both(&network(), |e| {
        assert_eq!(e.edge_routers_for_session("alice", "crm", Dial), ["er-eu"]);
        assert_eq!(
            e.edge_routers_for_session("alice", "vault", Dial),
            ["er-core"]
        );
        assert_eq!(
            e.edge_routers_for_session("server", "crm", Bind),
            ["er-eu", "er-us"]
        );
        // bob may dial crm, but his only router (er-core) does not serve crm.
        assert!(e.can_dial("bob", "crm"));
        assert!(e.edge_routers_for_session("bob", "crm", Dial).is_empty());
        // server has routers in common with crm but no Dial permission on it.
        assert!(e.edge_routers_for_session("server", "crm", Dial).is_empty());
        assert!(e.edge_routers_for_session("alice", "crm", Bind).is_empty());
        assert!(
            e.edge_routers_for_session("disabled", "crm", Dial)
                .is_empty()
        );
    });
}

#[test]
fn posture_checks_listed_per_granting_policy() {
    both(&network(), |e| {
        let checks = e.posture_checks_for("alice", "crm", Dial);
        assert_eq!(
            checks,
            [
                PolicyPostureChecks {
                    policy_id: "dial-crm-strict",
                    posture_check_ids: vec!["mfa", "os"]
                },
                PolicyPostureChecks {
                    policy_id: "dial-office",
                    posture_check_ids: vec![]
                },
            ]
        );
        let vault = e.posture_checks_for("alice", "vault", Dial);
        assert_eq!(
            vault,
            [PolicyPostureChecks {
                policy_id: "dial-vault",
                posture_check_ids: vec!["os"]
            }]
        );
        assert!(
            e.posture_checks_for("alice", "crm", Bind).is_empty(),
            "no bind policy"
        );
        assert!(
            e.posture_checks_for("bob", "vault", Dial).is_empty(),
            "no access"
        );
        assert!(
            e.posture_checks_for("disabled", "crm", Dial).is_empty(),
            "disabled"
        );
    });
}

#[test]
fn rebuild_follows_model_changes() {
    let mut model = network();
    let mut index = PolicyIndex::new(&model);
    assert!(!index.can_dial("guest", "crm"));
    model.identities[3].role_attributes.push("staff".into());
    index.rebuild(&model);
    assert!(index.can_dial("guest", "crm"));
    model.identities[0].disabled = true;
    index.rebuild(&model);
    assert!(index.dial_services("alice").is_empty());
    model.service_policies.clear();
    index.rebuild(&model);
    assert!(index.dial_services("bob").is_empty());
    assert!(PolicyIndex::default().dial_services("bob").is_empty());
}
