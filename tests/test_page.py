"""The offline plots page: DVC's template with Vega inlined, its placeholders kept for DVC."""

from __future__ import annotations

from stages import page


def test_page_keeps_dvcs_placeholders_and_escapes_a_closing_script_tag():
    html = page.page_html("let a = '</script>';", {"vega": "6.1", "vega-lite": "6.2"})
    assert "{plot_divs}" in html and "{refresh_tag}" in html
    assert "<\\/script>" in html and html.count("</script>") == 1  # only the element's own
    assert "Vega 6.1, Vega-Lite 6.2" in html


def test_the_bundle_is_vega_lite_6_and_defines_vega_embed():
    bundle, versions = page.vega_bundle()
    assert versions["vega-lite"].split(".")[0] == page.VEGA_LITE
    assert "vegaEmbed" in bundle and len(bundle) > 100_000
