"""Stage `page`: the HTML page `dvc plots show` and `dvc plots diff` fill, drawing offline.

Output:  ``--out`` (page/dvc-plots.html), which .dvc/config names as DVC's
         ``plots.html_template``: DVC's own page with its ``{plot_divs}`` placeholder, but
         with Vega, Vega-Lite and Vega-Embed inlined instead of loaded from a CDN.

DVC's default page loads those three libraries from cdn.jsdelivr.net, so without network
access (a cluster node, a train, an air-gapped lab) every interactive chart stays blank.
The bundle comes from vl-convert-python (``javascript_bundle()``: the libraries and all they
import, as one script that puts ``vegaEmbed`` on ``window``, which DVC's per-plot snippets
call), pinned to the Vega-Lite major version DVC's templates are written for.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cifar10_tricks.cli import run_main
from cifar10_tricks.errors import UserError
from cifar10_tricks.files import write_text

log = logging.getLogger("cifar10_tricks.page")
VEGA_LITE = "6"  # the schema of .dvc/plots/*.json; it compiles to the Vega the bundle holds

PAGE = """<!DOCTYPE html>
<html>
<head>
    {{refresh_tag}}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <!-- Vega {vega}, Vega-Lite {vega_lite}, Vega-Embed inlined by `dvc repro page`: no network. -->
    <script type="text/javascript">
{bundle}
    </script>
    <style>
        table {{
            border-spacing: 15px;
        }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def page_html(bundle: str, versions: dict[str, str]) -> str:
    """DVC's page template around ``bundle``; its placeholders stay for DVC to fill."""
    # A literal "</script" inside the code would end the <script> element early.
    safe = bundle.replace("</script", "<\\/script")
    return PAGE.format(bundle=safe, vega=versions["vega"], vega_lite=versions["vega-lite"])


def vega_bundle() -> tuple[str, dict[str, str]]:
    """(the JavaScript bundle, the versions in it) from vl-convert-python."""
    import vl_convert

    ours = [
        v.lstrip("v")
        for v in vl_convert.get_vegalite_versions()
        if v.lstrip("v").split(".")[0] == VEGA_LITE
    ]
    if not ours:
        raise UserError(
            f"vl-convert-python {getattr(vl_convert, '__version__', '?')} ships no Vega-Lite "
            f"{VEGA_LITE}.x; install vl-convert-python>=1.9 (`python -m pip install -e .`)."
        )
    # the newest VEGA_LITE.x it ships
    version = max(ours, key=lambda v: tuple(int(x) for x in v.split(".")))
    versions = {"vega": vl_convert.get_vega_version(), "vega-lite": version}
    return vl_convert.javascript_bundle(vl_version=f"v{version}"), versions


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m stages.page", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, required=True, help="the HTML template to write")
    args = parser.parse_args(argv)

    bundle, versions = vega_bundle()
    write_text(args.out, page_html(bundle, versions))
    log.info(
        "wrote %s: Vega %s, Vega-Lite %s inlined (%d kB)",
        args.out,
        versions["vega"],
        versions["vega-lite"],
        len(bundle) // 1024,
    )


if __name__ == "__main__":
    run_main(main)
