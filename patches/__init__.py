"""The built-in catalog: one module per patch, discovered by walking this folder.

Shipped inside the wheel as ``hermes_patch/patches``; see
:mod:`hermes_patch.registry`.
"""
