"""Pulumi program entry: the stack name's prefix picks the program.

    tenant-<slug>       a shared-tier tenant (stacks.programs.tenant_program)
    dedicated-<slug>    a dedicated customer cluster (stacks.programs.dedicated_program)
    shared-<cluster>    a shared cluster's baseline (stacks.programs.shared_cluster_program)
"""

import pulumi

from stacks.config import StackKind, parse_stack_name
from stacks.programs import dedicated_program, shared_cluster_program, tenant_program

PROGRAMS = {
    StackKind.TENANT: tenant_program,
    StackKind.DEDICATED: dedicated_program,
    StackKind.SHARED: shared_cluster_program,
}

stack = parse_stack_name(pulumi.get_stack())
PROGRAMS[stack.kind](stack)
