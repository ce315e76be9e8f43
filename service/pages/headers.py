"""The security headers of every HTML page this service serves: the web
pages under /ui/ and the API's /docs (service.http.ops_routes)."""

from __future__ import annotations

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
"""Scripts, styles, images and requests from this origin only; no inline
script or style (element or attribute), no eval; no page may frame ours;
no form posts anywhere (the pages' forms are handled by their script)."""


def strict_page_headers(csp: str = PAGE_CSP) -> dict[str, str]:
    """The policy above, no framing (CSP `frame-ancestors` and X-Frame-Options
    for older browsers), no Referer sent anywhere, no content sniffing."""
    return {
        "Content-Security-Policy": csp,
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }
