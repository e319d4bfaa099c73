"""The house as the design says it is: the CUDA kernels mirror the CPU kernels name for name and
argument for argument, no module imports another's private names, and imports point down (no
circles). Read from the sources (ast), so nothing here needs numba.cuda or a GPU."""
import ast
import pathlib

import pytest

from fastnn._kernels.cuda import DEVICE_ONLY, DEVICE_ONLY_MODULES

FASTNN = pathlib.Path(__file__).resolve().parent.parent / "fastnn"
KERNELS = FASTNN / "_kernels"
CUDA = KERNELS / "cuda"
# launchers that every device must have (the issue that asked for the mirror named these)
REQUIRED = {"losses": ("loss_forward_backward",), "optim": ("optimizer_update",),
            "network": ("network_forward", "network_backward", "network_loss",
                        "forward_loss_backward", "layer_grad_sumsq"),
            "steps": ("gather_batch", "train_steps", "evaluate_batches")}


def _is_device_code(node):
    """A @cuda.jit kernel or device function (the GPU's implementation, no CPU twin)."""
    return any("cuda.jit" in ast.unparse(d) for d in node.decorator_list)


def public_functions(source):
    """{name: [argument names]} of the module-level public functions in `source` (CUDA
    kernels, device functions and kernel factories left out)."""
    out = {}
    for node in ast.parse(source).body:
        if (isinstance(node, ast.FunctionDef) and not node.name.startswith("_")
                and not node.name.endswith("_kernel") and not _is_device_code(node)):
            out[node.name] = [a.arg for a in node.args.posonlyargs + node.args.args]
    return out


def mirror_mismatches(cpu_sources, cuda_sources, device_only):
    """Every way in which the CUDA modules fail to mirror the CPU ones: a module without a CPU
    twin (unless DEVICE_ONLY_MODULES lists it), a launcher the CPU lacks (unless device-only), another argument list, a required
    launcher missing on either side."""
    problems = []
    for module, source in sorted(cuda_sources.items()):
        if module in DEVICE_ONLY_MODULES:
            continue
        if module not in cpu_sources:
            problems.append(f"cuda/{module}.py has no CPU twin {module}.py")
            continue
        cpu = public_functions(cpu_sources[module])
        for name, args in public_functions(source).items():
            if name in device_only.get(module, ()):
                continue
            if name not in cpu:
                problems.append(f"cuda/{module}.py:{name} has no CPU twin in {module}.py")
            elif cpu[name] != args:
                problems.append(f"{module}.{name}: CPU ({', '.join(cpu[name])}) != CUDA "
                                f"({', '.join(args)})")
    for module, names in REQUIRED.items():
        for side, sources in (("CPU", cpu_sources), ("CUDA", cuda_sources)):
            defined = public_functions(sources.get(module, ""))
            problems += [f"{side} {module}.py lacks {name}" for name in names
                         if name not in defined]
    return problems


def _sources(folder):
    return {p.stem: p.read_text() for p in folder.glob("*.py") if p.stem != "__init__"}


def test_cuda_kernels_mirror_the_cpu_kernels():
    problems = mirror_mismatches(_sources(KERNELS), _sources(CUDA), DEVICE_ONLY)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("edit", ["swap", "rename", "drop"])
def test_mirror_check_fails_on_a_changed_signature(edit):
    """The check above is not vacuous: change one CUDA launcher and it reports exactly that."""
    cuda = _sources(CUDA)
    old = "def optimizer_update(opt, p, g, step, grad_scale, lo, hi, l2):"
    assert old in cuda["optim"]
    new = {"swap": "def optimizer_update(p, opt, g, step, grad_scale, lo, hi, l2):",
           "rename": "def optimizer_step(opt, p, g, step, grad_scale, lo, hi, l2):",
           "drop": "def optimizer_update(opt, p, g, step, grad_scale):"}[edit]
    cuda["optim"] = cuda["optim"].replace(old, new)
    problems = mirror_mismatches(_sources(KERNELS), cuda, DEVICE_ONLY)
    assert len(problems) == (2 if edit == "rename" else 1), problems
    assert all("optim" in p for p in problems)


def test_keeps_preactivation_is_defined_once():
    """The CUDA package compiles the CPU's rule for the device instead of restating it."""
    for path in CUDA.glob("*.py"):
        assert "def keeps_preactivation" not in path.read_text(), path


# ---------------------------------------------------------------------------- imports
def _module_name(path):
    rel = path.relative_to(FASTNN.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _modules():
    return {_module_name(p): p for p in FASTNN.rglob("*.py")}


def _resolve(module, path, node):
    """The absolute module a (possibly relative) ImportFrom in `module` names."""
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[:len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(modules):
    """[(importer, imported module, name or None)] for every fastnn import, lazy ones too."""
    out = []
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                target = _resolve(module, path, node)
                for alias in node.names:
                    if f"{target}.{alias.name}" in modules:  # a submodule
                        out.append((module, f"{target}.{alias.name}", None))
                    elif target.startswith("fastnn"):
                        out.append((module, target, alias.name))
            elif isinstance(node, ast.Import):
                out += [(module, a.name, None) for a in node.names
                        if a.name.startswith("fastnn")]
    return out


def test_no_module_imports_a_private_name_of_another():
    private = [f"{importer} imports {target}.{name}" for importer, target, name
               in _imports(_modules())
               if name and name.startswith("_") and not name.startswith("__")]
    assert not private, "\n".join(private)


# the one upward import left: MLP.save -> fastnn.io, the model file format, which builds MLPs
# (moving the format below the model is a change of its own, in files other changes rework)
KNOWN_UPWARD = {("fastnn.model", "fastnn.io")}


def test_imports_point_down():
    """No circle among fastnn's modules, counting imports inside functions (a package's
    __init__ importing its own submodules is how a package is built, not a circle)."""
    modules = _modules()
    graph = {m: set() for m in modules}
    for importer, target, _ in _imports(modules):
        while target not in modules and "." in target:
            target = target.rsplit(".", 1)[0]
        if (target in modules and target != importer and (importer, target) not in KNOWN_UPWARD
                and not (modules[importer].name == "__init__.py"
                         and target.startswith(importer + "."))):
            graph[importer].add(target)
    # a package's modules reach it through its __init__: count that edge only when the
    # __init__ itself imports something outside the package
    cycles = []
    state = {}

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)
