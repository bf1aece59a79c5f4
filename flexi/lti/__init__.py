"""LTI 1.3: Flexi as a tool that Moodle (or any LTI platform) launches inside a course.

Pure logic, no HTTP framework (the routes are `flexi.campus.lti`): the claims and how they map to Flexi's
roles (`claims`), Flexi's own signing keys (`keys`), the platforms Flexi trusts (`platforms`), their
signing keys fetched through the network guard (`platform_keys`), started logins with their state and
nonce (`logins`), the id_token check (`launch`), deep-linking answers (`deeplink`) and dynamic
registration (`registration`). The few JWT steps are written here with joserfc, after the IMS LTI 1.3
Core, Security Framework, Deep Linking 2.0 and Dynamic Registration specifications.
"""
