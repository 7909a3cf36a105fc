"""CrossGuard policy pack `cameleer-guardrails`, run on every preview and update (by hand:
`scripts/pulumi-with-policy preview -s <stack>`, which adds it):

    pulumi preview -s <stack> --policy-pack policy/

The engine starts this program (with the project's virtualenv, see PulumiPolicy.yaml); it
serves the policies of `policy.pack` until the engine is done.
"""

from pulumi_policy import PolicyPack

from policy.pack import MANDATORY, PACK_NAME, POLICIES

PolicyPack(name=PACK_NAME, policies=POLICIES, enforcement_level=MANDATORY)
