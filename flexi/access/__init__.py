"""Campus access (issue 4): who is asking (authentication), what they may do
(policy), how much (quotas), and what is recorded about it (usage, privacy).

Every request of both API dialects passes the same `AccessMiddleware`
(authentication, endpoint rules, terms of use) and every generation passes the
same `AccessGate` (model policy, quota reservation, usage record), so a rule
cannot be enforced on one door and missed on another.
"""
