"""The HTML of the LTI pages: errors, the deep-linking choice, the auto-submitting answer to the
platform, and the end of dynamic registration. Server-rendered, every value escaped, no inline script
(the CSP allows scripts from this server only: `/ui/assets/lti.js` submits forms and closes the
registration window). Each page carries its own CSP whose `frame-ancestors` names the platforms that may
show it in a frame; every other page of Flexi keeps `frame-ancestors 'none'`."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from html import escape

from fastapi.responses import HTMLResponse

from flexi import i18n
from flexi.http.headers import CSP

SCRIPT = "/ui/assets/lti.js"
STYLE = "/ui/assets/style.css"


def csp(frame_ancestors: Iterable[str], form_action: Iterable[str] = ()) -> str:
    """The web interface's CSP, with framing allowed for `frame_ancestors` (none if empty) and forms
    allowed to post to `form_action` besides this server."""
    ancestors = " ".join(sorted(set(frame_ancestors))) or "'none'"
    policy = CSP.replace("frame-ancestors 'none'", f"frame-ancestors {ancestors}")
    extra = " ".join(sorted(set(form_action)))
    return policy.replace("form-action 'self'", f"form-action 'self' {extra}") if extra else policy


def page(title: str, body: str, locale: str, *, status: int = 200, frame_ancestors: Iterable[str] = (),
         form_action: Iterable[str] = (), body_attrs: str = "") -> HTMLResponse:
    html = (f'<!doctype html><html lang="{escape(locale)}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{escape(title)} · Flexi</title>'
            f'<link rel="stylesheet" href="{STYLE}"><script type="module" src="{SCRIPT}"></script></head>'
            f'<body{body_attrs}><main id="main" class="center-box lti-page"><h1>{escape(title)}</h1>{body}</main></body></html>')
    return HTMLResponse(html, status_code=status, headers={
        "Content-Security-Policy": csp(frame_ancestors, form_action), "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer"})


def error_page(key: str, locale: str, status: int, frame_ancestors: Iterable[str], **values: object) -> HTMLResponse:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    body = (f'<p class="error" role="alert" data-lti-error="{escape(key)}">{escape(i18n.text(key, locale, **values))}</p>'
            f'<p>{escape(i18n.text("lti_error_hint", locale, time=now))}</p>')
    return page(i18n.text("lti_error_title", locale), body, locale, status=status, frame_ancestors=frame_ancestors)


def auto_post(url: str, fields: dict[str, str], locale: str, frame_ancestors: Iterable[str],
              form_action: Iterable[str]) -> HTMLResponse:
    """A form that lti.js submits at once (with a button for browsers without script)."""
    inputs = "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in fields.items())
    body = (f'<p>{escape(i18n.text("lti_dl_sending", locale))}</p><form method="post" action="{escape(url)}" '
            f'data-autosubmit="1">{inputs}<button type="submit">{escape(i18n.text("lti_dl_continue", locale))}</button></form>')
    return page(i18n.text("lti_dl_title", locale), body, locale, frame_ancestors=frame_ancestors, form_action=form_action)


def deep_link_choice(ticket: str, assistants: list[tuple[str, str]], models: list[str], default_model: str,
                     locale: str, frame_ancestors: Iterable[str]) -> HTMLResponse:
    t = lambda key: escape(i18n.text(key, locale))  # noqa: E731
    if assistants:
        items = "".join(f'<li><label><input type="radio" name="assistant" value="{escape(slug)}"{" checked" if i == 0 else ""}> '
                        f'{escape(name)}</label></li>' for i, (slug, name) in enumerate(assistants))
        pick = f'<fieldset><legend>{t("lti_dl_pick")}</legend><ul class="plain">{items}</ul></fieldset>'
    else:
        pick = f'<p>{t("lti_dl_none")}</p>'
    options = "".join(f'<option value="{escape(m)}"{" selected" if m == default_model else ""}>{escape(m)}</option>'
                      for m in models)
    create = (f'<fieldset><legend>{t("lti_dl_create")}</legend>'
              f'<div class="field"><label for="lti-name">{t("lti_dl_name")}</label>'
              f'<input id="lti-name" name="new_name" maxlength="100"></div>'
              f'<div class="field"><label for="lti-model">{t("lti_dl_model")}</label>'
              f'<select id="lti-model" name="new_model">{options}</select></div>'
              f'<div class="field"><label for="lti-prompt">{t("lti_dl_prompt")}</label>'
              f'<textarea id="lti-prompt" name="new_prompt" rows="4" maxlength="20000"></textarea></div></fieldset>')
    body = (f'<form method="post" action="/lti/deeplink"><input type="hidden" name="ticket" value="{escape(ticket)}">'
            f'{pick}{create}<button type="submit">{t("lti_dl_submit")}</button></form>')
    return page(i18n.text("lti_dl_title", locale), body, locale, frame_ancestors=frame_ancestors)


def registered(platform: str, locale: str, frame_ancestors: Iterable[str]) -> HTMLResponse:
    """The end of dynamic registration: lti.js posts {subject: "org.imsglobal.lti.close"} to the platform."""
    body = f'<p role="status">{escape(i18n.text("lti_registered_text", locale, platform=platform))}</p>'
    # Moodle shows the registration page in a frame of its own admin page (or a window it opened)
    return page(i18n.text("lti_registered_title", locale), body, locale, body_attrs=' data-lti-close="1"',
                frame_ancestors=frame_ancestors)
