"""The TARS language: `.tars` scripts, parsed and type-checked (pure: text in, values out).

``parse`` (:mod:`evolution.lang.parser`) gives the AST of :mod:`evolution.lang.ast`;
``check`` (:mod:`evolution.lang.checker`) gives its types, every error found and the
script's own structure (:mod:`evolution.lang.introspect`).  docs/language.md is the
language's reference.
"""
