// LTI pages (flexi/campus/lti_pages.py): no inline script is allowed, so this file does their two jobs.
// 1. A form marked data-autosubmit is sent at once (the deep-linking answer to the learning platform).
// 2. After dynamic registration, the platform's window is told to close (IMS LTI Dynamic Registration §3.6).
for (const form of document.querySelectorAll("form[data-autosubmit]")) form.submit();
if (document.body.dataset.ltiClose) {
  (window.opener || window.parent).postMessage({ subject: "org.imsglobal.lti.close" }, "*");
}
