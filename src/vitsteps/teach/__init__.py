"""The teaching tools around the stages: what the notebooks draw, play with and check.

| module       | holds                                                                                      |
|--------------|--------------------------------------------------------------------------------------------|
| `figures`    | the pictures, one module per part of the series (re-exported by the package)               |
| `explorers`  | the slider widgets: their pure computations (`compute`) apart from the wiring (`widgets`)  |
| `checks`     | the self-checks: one table of exercises (`exercises`) run by one loop (`spec`)             |
| `properties` | properties every correct ViT has, as checks that return a verdict                          |
| `buggy`      | a ViT with the classic bugs built in, for the bug hunt (deliberately wrong)                |

These modules may use everything below them (the stages, data, training, analysis); nothing below imports them.
Nothing is imported here, so `import vitsteps.teach` stays cheap: import the module you need.
"""
