"""Sources of the Triton Python-backend models (each is copied into a repository as ``model.py``).

They run inside Triton's Python backend, where ``triton_python_backend_utils`` exists; this
package never imports them.
"""
