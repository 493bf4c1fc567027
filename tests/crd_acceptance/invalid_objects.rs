//! A corpus of invalid Hibernations and CocoonSets, each with the words its rejection must
//! contain (the field path, and the rule where the path alone is ambiguous).

/// One invalid object and what its rejection message must name.
pub struct Case {
    pub what: &'static str,
    pub manifest: String,
    pub expect: Vec<&'static str>,
}

fn hibernation(spec: &str) -> String {
    format!("apiVersion: cocoon.cis/v1alpha1\nkind: Hibernation\nmetadata: {{name: bad}}\n{spec}\n")
}

fn cocoon_set_named(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: cocoon.cis/v1alpha1\nkind: CocoonSet\nmetadata: {{name: {name}}}\n{spec}\n"
    )
}

fn cocoon_set(spec: &str) -> String {
    cocoon_set_named("bad", spec)
}

fn case(what: &'static str, manifest: String, expect: &[&'static str]) -> Case {
    Case { what, manifest, expect: expect.to_vec() }
}

/// Every case; each must be rejected.
pub fn corpus() -> Vec<Case> {
    let seventeen_toolboxes =
        (0..17).map(|i| format!("{{name: tb{i}, image: debian}}")).collect::<Vec<_>>().join(", ");
    vec![
        case("Hibernation without spec", hibernation(""), &["spec", "Required value"]),
        case(
            "missing podName",
            hibernation("spec: {action: hibernate}"),
            &["spec.podName", "Required value"],
        ),
        case("empty podName", hibernation("spec: {podName: ''}"), &["spec.podName"]),
        case(
            "unknown action",
            hibernation("spec: {podName: p, action: sleep}"),
            &["spec.action", "Unsupported value", "sleep"],
        ),
        case(
            "missing agent",
            cocoon_set("spec: {suspend: true}"),
            &["spec.agent", "Required value"],
        ),
        case(
            "missing agent.image",
            cocoon_set("spec: {agent: {replicas: 1}}"),
            &["spec.agent.image", "Required value"],
        ),
        case(
            "negative replicas",
            cocoon_set("spec: {agent: {image: i, replicas: -1}}"),
            &["spec.agent.replicas", "greater than or equal to 0"],
        ),
        case(
            "replicas over the maximum",
            cocoon_set("spec: {agent: {image: i, replicas: 65}}"),
            &["spec.agent.replicas", "less than or equal to 64"],
        ),
        case(
            "replicas of the wrong type",
            cocoon_set("spec: {agent: {image: i, replicas: two}}"),
            &["spec.agent.replicas", "integer"],
        ),
        case(
            "suspend of the wrong type",
            cocoon_set("spec: {agent: {image: i}, suspend: sometimes}"),
            &["spec.suspend", "boolean"],
        ),
        case(
            "cpu that is not a quantity",
            cocoon_set("spec: {agent: {image: i, resources: {cpu: two cores}}}"),
            &["spec.agent.resources.cpu"],
        ),
        case(
            "memory that is not a quantity",
            cocoon_set("spec: {agent: {image: i, resources: {memory: lots}}}"),
            &["spec.agent.resources.memory"],
        ),
        case(
            "storage that is not a quantity",
            cocoon_set("spec: {agent: {image: i, storage: 100 gigs}}"),
            &["spec.agent.storage"],
        ),
        case(
            "envFrom with both configMapRef and secretRef",
            cocoon_set(
                "spec: {agent: {image: i, envFrom: [{configMapRef: {name: a}, secretRef: {name: b}}]}}",
            ),
            &["spec.agent.envFrom[0]", "exactly one of configMapRef and secretRef"],
        ),
        case(
            "envFrom with neither configMapRef nor secretRef",
            cocoon_set("spec: {agent: {image: i, envFrom: [{}]}}"),
            &["spec.agent.envFrom[0]", "exactly one of configMapRef and secretRef"],
        ),
        case(
            "unknown snapshotPolicy",
            cocoon_set("spec: {agent: {image: i}, snapshotPolicy: sometimes}"),
            &["spec.snapshotPolicy", "Unsupported value"],
        ),
        case(
            "nodeName with a nodeSelector",
            cocoon_set("spec: {agent: {image: i}, nodeName: n1, nodeSelector: {zone: a}}"),
            &["nodeSelector and affinity apply only without it"],
        ),
        case(
            "unknown onNodeLoss",
            cocoon_set("spec: {agent: {image: i}, onNodeLoss: migrate}"),
            &["spec.onNodeLoss", "Unsupported value"],
        ),
        case(
            "empty nodeName",
            cocoon_set("spec: {agent: {image: i}, nodeName: ''}"),
            &["spec.nodeName"],
        ),
        case(
            "unknown field",
            cocoon_set("spec: {agent: {image: i, imagePullPolicy: Always}}"),
            &["unknown field", "spec.agent.imagePullPolicy"],
        ),
        case(
            "duplicate toolbox names",
            cocoon_set(
                "spec: {agent: {image: i}, toolboxes: [{name: win, image: a}, {name: win, image: b}]}",
            ),
            &["spec.toolboxes", "unique"],
        ),
        case(
            "numeric toolbox name",
            cocoon_set("spec: {agent: {image: i}, toolboxes: [{name: '1', image: a}]}"),
            &["spec.toolboxes[0].name", "not purely numeric"],
        ),
        case(
            "toolbox name with upper case",
            cocoon_set("spec: {agent: {image: i}, toolboxes: [{name: Windows, image: a}]}"),
            &["spec.toolboxes[0].name", "DNS label"],
        ),
        case(
            "toolbox name too long",
            cocoon_set(&format!(
                "spec: {{agent: {{image: i}}, toolboxes: [{{name: {}, image: a}}]}}",
                "t".repeat(41)
            )),
            &["spec.toolboxes[0].name"],
        ),
        case(
            "unknown toolbox mode",
            cocoon_set(
                "spec: {agent: {image: i}, toolboxes: [{name: tb, image: a, mode: borrow}]}",
            ),
            &["spec.toolboxes[0].mode", "Unsupported value"],
        ),
        case(
            "unknown toolbox os",
            cocoon_set("spec: {agent: {image: i}, toolboxes: [{name: tb, image: a, os: plan9}]}"),
            &["spec.toolboxes[0].os", "Unsupported value"],
        ),
        case(
            "non-static toolbox without image",
            cocoon_set("spec: {agent: {image: i}, toolboxes: [{name: tb, mode: run}]}"),
            &["spec.toolboxes[0].image", "required unless mode is static"],
        ),
        case(
            "vncPort out of range",
            cocoon_set(
                "spec: {agent: {image: i}, toolboxes: [{name: tb, mode: static, vncPort: 70000}]}",
            ),
            &["spec.toolboxes[0].vncPort"],
        ),
        case(
            "more toolboxes than the maximum",
            cocoon_set(&format!(
                "spec: {{agent: {{image: i}}, toolboxes: [{seventeen_toolboxes}]}}"
            )),
            &["spec.toolboxes", "16"],
        ),
        case(
            "podName with upper case",
            hibernation("spec: {podName: Sre-Agent}"),
            &["spec.podName", "should match"],
        ),
        case(
            "podName listing two pods",
            hibernation("spec: {podName: 'bot-1,bot-2'}"),
            &["spec.podName", "should match"],
        ),
        case(
            "podName with a space",
            hibernation("spec: {podName: 'bot 1'}"),
            &["spec.podName", "should match"],
        ),
        case(
            "podName with an underscore",
            hibernation("spec: {podName: bot_1}"),
            &["spec.podName", "should match"],
        ),
        case(
            "podName starting with a dash",
            hibernation("spec: {podName: -bot}"),
            &["spec.podName", "should match"],
        ),
        case(
            "podName longer than a DNS subdomain",
            hibernation(&format!("spec: {{podName: {}}}", "p".repeat(254))),
            &["spec.podName"],
        ),
        case(
            "podName of the wrong type",
            hibernation("spec: {podName: 5}"),
            &["spec.podName", "string"],
        ),
        case(
            "action of the wrong type",
            hibernation("spec: {podName: p, action: 1}"),
            &["spec.action"],
        ),
        case(
            "unknown Hibernation field",
            hibernation("spec: {podName: p, pods: [a, b]}"),
            &["unknown field", "spec.pods"],
        ),
        case(
            "replicas that is not whole",
            cocoon_set("spec: {agent: {image: i, replicas: 1.5}}"),
            &["spec.agent.replicas"],
        ),
        case(
            "agent that is not an object",
            cocoon_set("spec: {agent: ubuntu}"),
            &["spec.agent", "object"],
        ),
        case(
            "toolboxes that is not a list",
            cocoon_set("spec: {agent: {image: i}, toolboxes: windows}"),
            &["spec.toolboxes", "array"],
        ),
        case(
            "unknown spec field",
            cocoon_set("spec: {agent: {image: i}, replicas: 3}"),
            &["unknown field", "spec.replicas"],
        ),
        case(
            "unknown resources field",
            cocoon_set("spec: {agent: {image: i, resources: {gpu: '1'}}}"),
            &["unknown field", "spec.agent.resources.gpu"],
        ),
        case(
            "nodeName longer than a DNS subdomain",
            cocoon_set(&format!("spec: {{agent: {{image: i}}, nodeName: {}}}", "n".repeat(254))),
            &["spec.nodeName"],
        ),
        case(
            "serviceAccountName of the wrong type",
            cocoon_set("spec: {agent: {image: i, serviceAccountName: [a]}}"),
            &["spec.agent.serviceAccountName", "string"],
        ),
        case(
            "configMapRef without a name",
            cocoon_set("spec: {agent: {image: i, envFrom: [{configMapRef: {}}]}}"),
            &["spec.agent.envFrom[0].configMapRef.name", "Required value"],
        ),
        case(
            "toolbox without a name",
            cocoon_set("spec: {agent: {image: i}, toolboxes: [{image: a}]}"),
            &["spec.toolboxes[0].name", "Required value"],
        ),
        case(
            "toolbox name starting with a dash",
            cocoon_set("spec: {agent: {image: i}, toolboxes: [{name: -win, image: a}]}"),
            &["spec.toolboxes[0].name", "DNS label"],
        ),
        case(
            "toolbox storage that is not a quantity",
            cocoon_set(
                "spec: {agent: {image: i}, toolboxes: [{name: tb, image: a, storage: big}]}",
            ),
            &["spec.toolboxes[0].storage"],
        ),
        case(
            "toolbox cpu that is not a quantity",
            cocoon_set(
                "spec: {agent: {image: i}, toolboxes: [{name: tb, image: a, resources: {cpu: fast}}]}",
            ),
            &["spec.toolboxes[0].resources.cpu"],
        ),
        case(
            "toolbox vncPort of the wrong type",
            cocoon_set(
                "spec: {agent: {image: i}, toolboxes: [{name: tb, mode: static, vncPort: five}]}",
            ),
            &["spec.toolboxes[0].vncPort"],
        ),
        case(
            "CocoonSet name longer than 50 characters",
            cocoon_set_named(&"n".repeat(51), "spec: {agent: {image: i}}"),
            &["metadata.name", "50"],
        ),
    ]
}
