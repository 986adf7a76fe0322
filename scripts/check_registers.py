#!/usr/bin/env python3
"""Register and spill budget of every CUDA kernel the glue launches, on sm_90.

Compiles the ATen glue csrc/ops/cuda/*.cu (which instantiates exactly the kernels the glue can
launch) against the installed torch's headers, even a CPU-only torch (its wheel ships the c10/cuda
headers but the generated c10/cuda/impl/cuda_cmake_macros.h, stubbed here), to sm_90 code so that
ptxas runs, with
`-Xptxas -v`; in parallel and through ccache when present (ccache replays ptxas's report on a
hit). Prints one row per kernel: registers, spill stores / loads, stack frame, shared memory,
block size, and the blocks per SM and occupancy that follow on sm_90; then checks every kernel
against BUDGET below and exits 1 naming each kernel that

  - spills (spill stores or loads above the family's max_spill: 0, except the generic-degree
    kernels, which keep per-element arrays in local memory by design),
  - uses more registers than its family's max_registers (or its own exception's, see BUDGET),
  - has a stack frame above its family's max_stack,
  - or belongs to no family in BUDGET (a new kernel needs a budget line).

Block size: the kernel's __launch_bounds__ or TR_BLOCK_SIZE (the same without the bounds, see
kernels/cuda_utils.cuh) in kernels/*.cuh, which is the block its launcher launches (the launchers
and the bounds use the same constants, e.g. kRationalThreads); a kernel with neither is an error.
Dynamic shared memory: where the launcher requests it (the PWLU backward's bins), from
pwlu_backward_window's formula for PWLU_PIECES pieces.

Usage: scripts/check_registers.py [--markdown FILE] [--jobs N]
Skips (exit 0) without nvcc or torch, unless CI=true. NVCC: the compiler; JOBS: parallel compiles;
NO_CCACHE=1: without ccache. Needs Python 3 only (and c++filt or nvcc's cu++filt).
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNELS = os.path.join(ROOT, "kernels")
GLUE = os.path.join(ROOT, "csrc", "ops", "cuda")
# Objects and the stubbed header. A fixed path, not a temporary one: ccache hashes the -isystem
# path, so a new directory per run would never hit.
WORK = os.path.join(ROOT, "build", "check_registers")


class Budget(NamedTuple):
    label: str           # readable family name
    args: tuple          # role of each template argument: deg, n, power, dtype
    max_registers: int
    max_stack: int       # bytes of stack frame
    why: str             # one line: what the numbers buy or where they come from
    max_spill: int = 0   # bytes, stores and loads each
    exceptions: tuple = ()  # (kernel as printed, max_registers, why): one kernel's own register cap


def register_cap(budget, name):
    """(max_registers, why) for the kernel printed as name: its exception, else its family's."""
    for kernel, regs, why in budget.exceptions:
        if kernel == name:
            return regs, why
    return budget.max_registers, budget.why


# Register caps sit on sm_90's occupancy steps for the block size (256 threads: 64 registers give 4
# blocks per SM, 80 give 3, 128 give 2; 128 threads: 32 give 16, 48 give 10), so that a cap says how
# many blocks fit. Stack frames of about 2 KiB in the power-basis kernels are the large-|x| path
# (rational_element_large's float64 arrays), touched only for |x| above the overflow threshold.
# Spills: none outside the generic kernels. The fixed-degree, rows and RPAU kernels take the rare
# large-|x| path in a second pass after their hot loops (kernels/rational.cuh, "The large-|x| path
# ..."), and they are declared with TR_BLOCK_SIZE instead of a bare __launch_bounds__(256): with it
# ptxas (nvcc 13.0) aimed at 48-80 registers of its own choosing and spilled (up to 60 bytes in 30
# kernels, hot loops included); without it these kernels compile spill-free at the registers below.
BUDGET = {
    "rational_forward_fixed_kernel": Budget(
        "rational fixed fwd", ("deg", "deg", "power", "dtype"), 64, 2560,
        "coefficients in registers; 4 blocks of 256 per SM",
        exceptions=(("rational fixed fwd (7,6) power double", 72,
                     "15 float64 coefficients (55 in the hot loop) plus the pass-2 call: 3 blocks"),)),
    "rational_backward_fixed_kernel": Budget(
        "rational fixed bwd", ("deg", "deg", "power", "dtype"), 128, 2560,
        "coefficients and M+N+2 accumulators in registers (float: 64-80, 3-4 blocks)",
        exceptions=(("rational fixed bwd (7,6) power double", 160,
                     "the hot loop alone takes 128; the pass-2 call (large |x|, +-inf limits) tips it over: 1 block"),
                    ("rational fixed bwd (5,4) power double", 136,
                     "128 in the hot loop; the pass-2 call's +-inf limits (rational_element_at_inf) add 6: 1 block"),
                    ("rational fixed bwd (4,4) power double", 136,
                     "128 in the hot loop; the pass-2 call's +-inf limits (rational_element_at_inf) add 4: 1 block"))),
    "rational_forward_rows_kernel": Budget(
        "rational rows fwd", ("deg", "deg", "power", "dtype"), 128, 2560,
        "4 columns (2 double) of coefficients per thread; 2 blocks of 256 per SM"),
    "rational_backward_rows_kernel": Budget(
        "rational rows bwd", ("deg", "deg", "power", "dtype"), 128, 2560,
        "2 columns (1 double) of coefficients + accumulators; __launch_bounds__(256, 2): 2 blocks per SM"),
    "rational_forward_rpau_kernel": Budget(
        "rational RPAU fwd", ("deg", "deg", "dtype"), 128, 2560,
        "per-element noisy coefficients in registers; 2 blocks of 256 per SM"),
    "rational_backward_rpau_kernel": Budget(
        "rational RPAU bwd", ("deg", "deg", "dtype"), 255, 2560,
        "noisy coefficients, multipliers, accumulators; float64 (7,6) needs 204-240: 1 block"),
    "rational_forward_generic_kernel": Budget(
        "rational generic fwd", ("dtype",), 80, 4096,
        "runtime degree <= 32: per-element arrays in local memory (stack), by design", max_spill=64),
    "rational_backward_generic_kernel": Budget(
        "rational generic bwd", ("dtype",), 128, 5120,
        "runtime degree <= 32: per-element arrays and accumulators in local memory, by design", max_spill=256),
    "finish_partials_kernel": Budget(
        "finish partials", ("dtype",), 32, 0,
        "a sequential sum per (group, coefficient); 16 blocks of 128 per SM (full occupancy)"),
    "era_forward_fixed_kernel": Budget(
        "ERA fixed fwd", ("n", "dtype"), 64, 0,
        "2 + 4n parameters in registers; 4 blocks of 256 per SM"),
    "era_backward_fixed_kernel": Budget(
        "ERA fixed bwd", ("n", "dtype"), 128, 0,
        "2 + 4n parameters and accumulators in registers (float: 64, 4 blocks; float64 n=4: 94)"),
    "era_forward_generic_kernel": Budget(
        "ERA generic fwd", ("dtype",), 64, 64,
        "runtime n <= 32, parameters in shared memory; 4 blocks of 256 per SM", max_spill=16),
    "era_backward_generic_kernel": Budget(
        "ERA generic bwd", ("dtype",), 64, 1536,
        "runtime n <= 32: accumulators in local memory (stack), by design", max_spill=96),
    "era_forward_rows_kernel": Budget(
        "ERA rows fwd", ("n", "dtype"), 128, 0,
        "4 columns (2 double) of 2 + 4n parameters per thread; 2 blocks of 256 per SM"),
    "era_backward_rows_kernel": Budget(
        "ERA rows bwd", ("n", "dtype"), 128, 0,
        "2 columns (1 double) of 2 + 4n parameters and accumulators per thread; 2 blocks of 256 per SM"),
    "pwlu_forward_rows_kernel": Budget(
        "PWLU rows fwd", ("dtype",), 128, 0,
        "4 columns (2 double) of breakpoint constants per thread; 2 blocks of 256 per SM"),
    "pwlu_backward_rows_kernel": Budget(
        "PWLU rows bwd", ("dtype",), 128, 0,
        "2 columns (1 double) and their bins (dynamic shared memory); 2 blocks of 256 per SM"),
    "pwlu_forward_kernel": Budget(
        "PWLU fwd", ("dtype",), 32, 0,
        "a breakpoint search per element; 8 blocks of 256 per SM (full occupancy)"),
    "pwlu_backward_kernel": Budget(
        "PWLU bwd", ("dtype",), 48, 0,
        "bins in dynamic shared memory; 10 blocks of 128 per SM by registers"),
}

# sm_90 (H100 / H200) limits for the occupancy columns.
SM90 = dict(regs=65536, sub_partitions=4, reg_unit=256, warps=64, blocks=32, smem=228 * 1024,
            smem_reserved=1024, smem_unit=128)
WARP = 32
PWLU_PIECES = 16  # the representative N for the PWLU backward's dynamic shared memory
DTYPES = {"__half": "half", "__nv_bfloat16": "bfloat16", "float": "float", "double": "double"}


def fail(msg):
    print(f"check_registers: {msg}", file=sys.stderr)
    sys.exit(1)


def skip(msg):
    if os.environ.get("CI") == "true":
        fail(f"{msg} (required in CI)")
    print(f"check_registers: {msg}, skipping")
    sys.exit(0)


# ------------------------------------------------------------------------------------------------
# What the headers say: `constexpr int` constants and each kernel's __launch_bounds__.

def header_text():
    return "".join(open(os.path.join(KERNELS, f)).read() for f in sorted(os.listdir(KERNELS))
                   if f.endswith((".cuh", ".h")))


def evaluate(expr, value):
    """An integer expression of the headers: integers, constants (value(name)), + - * / ( )."""
    digits = re.sub(r"[A-Za-z_]\w*", lambda m: str(value(m.group(0))), expr)
    if not re.fullmatch(r"[\d\s+\-*/()]+", digits):
        fail(f"cannot evaluate {expr}")
    return eval(digits.replace("/", "//"))  # only digits and operators are left: safe


def int_constants(text):
    """name -> value of the headers' `constexpr int NAME = EXPR;` constants."""
    exprs = dict(re.findall(r"constexpr\s+int\s+(\w+)\s*=\s*([^;]+);", text))
    values = {}

    def value(name):
        if name not in values:
            if name not in exprs:
                fail(f"constant {name} not found in kernels/")
            values[name] = evaluate(exprs[name], value)
        return values[name]

    return value


def launch_bounds(text, value):
    """kernel name -> threads of its __launch_bounds__ or TR_BLOCK_SIZE (None where it has neither)."""
    bounds = {}
    for m in re.finditer(r"__global__\s+void\s+(?:(?:__launch_bounds__|TR_BLOCK_SIZE)\s*\(([^)]*)\)\s*)?(\w+)\s*\(",
                         text):
        expr, name = m.groups()
        bounds[name] = evaluate(expr.split(",")[0], value) if expr else None
    return bounds


def dynamic_shared(name, dtype, value):
    """Bytes of dynamic shared memory the launcher requests for this kernel (0: none)."""
    if name not in ("pwlu_backward_kernel", "pwlu_backward_rows_kernel"):
        return 0
    # pwlu_backward_window (kernels/pwlu.cuh): window = min(n + 1, kPwluBinBytes / (bins_per_slot *
    # sizeof(acc))) heights slots of bins_per_slot acc_t bins each: one per thread, times the
    # backward's columns per thread (RowLanes<T, true>: 1 for double, else 2) in the rows kernel.
    acc = 8 if dtype == "double" else 4
    if name == "pwlu_backward_rows_kernel":
        bins_per_slot = value("kRowsThreads") * (1 if dtype == "double" else 2)
    else:
        bins_per_slot = value("kPwluBackwardThreads")
    window = min(PWLU_PIECES + 1, value("kPwluBinBytes") // (bins_per_slot * acc))
    return window * bins_per_slot * acc


# ------------------------------------------------------------------------------------------------
# Compiling and reading ptxas's report.

def find_nvcc():
    for c in (os.environ.get("NVCC"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc", "/usr/local/bin/nvcc"):
        if c and os.access(c, os.X_OK):
            return c
    return None


def torch_info():
    """(torch's directory, its _GLIBCXX_USE_CXX11_ABI) or None when torch is not importable."""
    code = "import os, torch; print(os.path.dirname(torch.__file__)); print(int(torch._C._GLIBCXX_USE_CXX11_ABI))"
    r = subprocess.run(["python3", "-c", code], capture_output=True, text=True)
    if r.returncode != 0:
        return None
    torch_dir, abi = r.stdout.split()
    return torch_dir, abi


def glue_flags(torch_dir, abi):
    """The glue's flags as the CMake build gives them (kernels/ and csrc/ on the include path, the
    CUDA half/bfloat16 conversions hidden), with sm_90 code."""
    stub = os.path.join(WORK, "stub")
    if not os.path.exists(os.path.join(torch_dir, "include/c10/cuda/impl/cuda_cmake_macros.h")):
        # What torch's CUDA build generates (shared libraries build); a CPU wheel lacks it.
        os.makedirs(os.path.join(stub, "c10/cuda/impl"), exist_ok=True)
        with open(os.path.join(stub, "c10/cuda/impl/cuda_cmake_macros.h"), "w") as f:
            f.write("#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n")
    return ["-std=c++17", "-O2", "-gencode", "arch=compute_90,code=sm_90", "-Xptxas", "-v",
            f"-D_GLIBCXX_USE_CXX11_ABI={abi}", "-I", os.path.join(ROOT, "csrc"),
            "-isystem", os.path.join(torch_dir, "include"),
            "-isystem", os.path.join(torch_dir, "include/torch/csrc/api/include"), "-isystem", stub,
            "-DTORCH_RATIONAL_BUILDING", "-DTORCH_RATIONAL_WITH_CUDA", "--expt-relaxed-constexpr",
            "-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__", "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
            "-D__CUDA_NO_HALF2_OPERATORS__", "-Xcompiler", "-fPIC", "-I", KERNELS]


def compile_all(nvcc, flags, jobs):
    """ptxas's report (stderr) of every glue file, compiled in parallel."""
    launcher = [nvcc]
    if shutil.which("ccache") and os.environ.get("NO_CCACHE", "0") != "1":
        launcher = ["ccache", nvcc]
    sources = sorted(os.path.join(GLUE, f) for f in os.listdir(GLUE) if f.endswith(".cu"))

    def one(src):
        obj = os.path.join(WORK, os.path.basename(src) + ".o")
        return subprocess.run(launcher + flags + ["-c", src, "-o", obj], capture_output=True, text=True)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(one, sources))
    for src, r in zip(sources, results):
        if r.returncode != 0:
            fail(f"{os.path.relpath(src, ROOT)} does not compile:\n{r.stdout}{r.stderr}")
    return [r.stderr for r in results]


def parse_ptxas(report):
    """mangled kernel name -> dict(regs, spill_st, spill_ld, stack, smem) from `ptxas -v`."""
    kernels, current = {}, None
    for line in report.splitlines():
        m = re.search(r"Compiling entry function '(\S+)'", line)
        if m:
            current = kernels.setdefault(m.group(1), {})
            continue
        if current is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m and "stack" not in current:
            current.update(stack=int(m.group(1)), spill_st=int(m.group(2)), spill_ld=int(m.group(3)))
            continue
        m = re.search(r"Used (\d+) registers", line)
        if m:
            smem = re.search(r"(\d+) bytes smem", line)
            current.update(regs=int(m.group(1)), smem=int(smem.group(1)) if smem else 0)
            current = None  # the entry's report is complete; callee lines follow
    return kernels


def demangle(names, nvcc):
    tool = os.path.join(os.path.dirname(nvcc), "cu++filt")
    tool = tool if os.access(tool, os.X_OK) else shutil.which("c++filt")
    if not tool:
        fail("neither cu++filt nor c++filt found")
    out = subprocess.run([tool], input="\n".join(names), capture_output=True, text=True, check=True).stdout
    return dict(zip(names, out.splitlines()))


def split_template(demangled):
    """'void ns::name<5, 4, true, float>(...)' -> ('name', ['5', '4', 'true', 'float'])."""
    m = re.match(r"void (?:\w+::)*(\w+)(?:<(.*?)>)?\(", demangled)
    if not m:
        fail(f"unexpected kernel name {demangled}")
    return m.group(1), [a.strip() for a in m.group(2).split(",")] if m.group(2) else []


# ------------------------------------------------------------------------------------------------
# Occupancy (the CUDA occupancy calculator's rules for sm_90).

def occupancy(regs, threads, smem):
    """(blocks per SM, occupancy fraction, limiting resource)."""
    warps = -(-threads // WARP)
    # Registers are allocated per warp in units of 256, from each of the 4 sub-partitions' share.
    regs_per_warp = -(-max(regs, 1) * WARP // SM90["reg_unit"]) * SM90["reg_unit"]
    per_sub = SM90["regs"] // SM90["sub_partitions"]
    by_regs = (per_sub // regs_per_warp) * SM90["sub_partitions"] // warps
    smem_block = -(-(smem + SM90["smem_reserved"]) // SM90["smem_unit"]) * SM90["smem_unit"]
    limits = {"registers": by_regs, "threads": SM90["warps"] // warps, "blocks": SM90["blocks"],
              "shared": SM90["smem"] // smem_block}
    limit = min(limits, key=limits.get)
    blocks = limits[limit]
    return blocks, blocks * warps / SM90["warps"], limit


# ------------------------------------------------------------------------------------------------

class Row(NamedTuple):
    family: str
    name: str      # readable
    sort_key: tuple
    regs: int
    spill_st: int
    spill_ld: int
    stack: int
    smem: int      # static + dynamic
    smem_note: str
    threads: int
    blocks: int
    occupancy: float
    limit: str


def readable(budget, args):
    parts, degrees = [], []
    for role, arg in zip(budget.args, args):
        if role == "deg":
            degrees.append(arg)
        elif role == "n":
            parts.append(f"n={arg}")
        elif role == "power":
            parts.append("power" if arg == "true" else "other bases")
        else:
            parts.append(DTYPES.get(arg, arg))
    if degrees:
        parts.insert(0, f"({','.join(degrees)})")
    return " ".join([budget.label] + parts)


def sort_key(budget, args):
    key = [list(BUDGET).index(next(k for k, b in BUDGET.items() if b is budget))]
    for role, arg in zip(budget.args, args):
        if role in ("deg", "n"):
            key.append(int(arg))
        elif role == "power":
            key.append(arg != "true")
        else:
            key.append(list(DTYPES).index(arg) if arg in DTYPES else len(DTYPES))
    return tuple(key)


def check(rows, uncovered):
    problems = [f"{name}: not in the budget (add a line for its family to BUDGET in scripts/check_registers.py)"
                for name in sorted(uncovered)]
    for r in rows:
        b = BUDGET[r.family]
        if r.spill_st > b.max_spill or r.spill_ld > b.max_spill:
            problems.append(f"{r.name}: spills {r.spill_st} / {r.spill_ld} bytes (stores / loads) to local "
                            f"memory, budget {b.max_spill}")
        cap, why = register_cap(b, r.name)
        if r.regs > cap:
            problems.append(f"{r.name}: {r.regs} registers > budget {cap} ({why})")
        if r.stack > b.max_stack:
            problems.append(f"{r.name}: {r.stack} bytes stack frame > budget {b.max_stack}")
    return problems


HEADER = ["kernel", "regs", "budget", "spill st/ld B", "stack B", "smem B", "block", "blocks/SM", "occupancy", "limit"]


def cells(r, budget):
    return [r.name, str(r.regs), str(register_cap(budget, r.name)[0]), f"{r.spill_st}/{r.spill_ld}", str(r.stack),
            f"{r.smem}{r.smem_note}", str(r.threads), str(r.blocks), f"{r.occupancy:.0%}", r.limit]


def print_table(rows):
    table = [HEADER] + [cells(r, BUDGET[r.family]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADER))]
    for row in table:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))


def markdown(rows, problems):
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join(["---"] + ["---:"] * (len(HEADER) - 1)) + "|"]
    lines += ["| " + " | ".join(cells(r, BUDGET[r.family])) + " |" for r in rows]
    lines += ["", f"`*`: dynamic shared memory included, for the PWLU backward with N = {PWLU_PIECES} pieces.", "",
              "| family | max registers | max stack B | max spill B | why |", "|---|---:|---:|---:|---|"]
    lines += [f"| {b.label} | {b.max_registers} | {b.max_stack} | {b.max_spill} | {b.why}"
              + "".join(f"; {k}: {regs} ({why})" for k, regs, why in b.exceptions) + " |" for b in BUDGET.values()]
    if problems:
        lines += ["", "Over budget:", ""] + [f"- {p}" for p in problems]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--markdown", metavar="FILE", help="also write the table as markdown to FILE")
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("JOBS", os.cpu_count() or 1)),
                    help="parallel compiles (default: JOBS or the number of cores)")
    opts = ap.parse_args()

    nvcc = find_nvcc()
    if not nvcc:
        skip("nvcc not found")
    info = torch_info()
    if not info:
        skip("torch not importable (the glue needs its headers)")
    os.makedirs(WORK, exist_ok=True)
    version = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1]
    print(f"check_registers: {version}; sm_90")
    reports = compile_all(nvcc, glue_flags(*info), max(1, opts.jobs))

    kernels = {}
    for report in reports:
        kernels.update(parse_ptxas(report))  # a kernel in several files (the finish) compiles the same
    headers = header_text()
    value = int_constants(headers)
    bounds = launch_bounds(headers, value)
    names = demangle(sorted(kernels), nvcc)

    rows_by_family, uncovered = {}, []
    for mangled, k in kernels.items():
        family, args = split_template(names[mangled])
        if family not in BUDGET:
            uncovered.append(names[mangled])
            continue
        if bounds.get(family) is None:
            fail(f"{family} has no __launch_bounds__ or TR_BLOCK_SIZE in kernels/ "
                 "(its block size is read from there)")
        budget = BUDGET[family]
        dtype = DTYPES.get(args[-1], args[-1]) if args else ""
        dyn = dynamic_shared(family, dtype, value)
        smem = k["smem"] + dyn
        blocks, occ, limit = occupancy(k["regs"], bounds[family], smem)
        rows_by_family.setdefault(family, []).append(Row(
            family, readable(budget, args), sort_key(budget, args), k["regs"], k["spill_st"], k["spill_ld"],
            k["stack"], smem, "*" if dyn else "", bounds[family], blocks, occ, limit))
    rows = sorted((r for rs in rows_by_family.values() for r in rs), key=lambda r: r.sort_key)

    print_table(rows)
    print(f"smem B: static + dynamic; * includes the PWLU backward's bins for N = {PWLU_PIECES} pieces")
    printed = {r.name for r in rows}
    for family, b in BUDGET.items():
        if family not in rows_by_family:
            print(f"check_registers: note: no kernel of budget line {family} was compiled (stale line?)")
        for kernel, _, _ in b.exceptions:
            if kernel not in printed:
                print(f"check_registers: note: no kernel {kernel} for the exception of {family} (stale?)")
    problems = check(rows, uncovered)
    if opts.markdown:
        with open(opts.markdown, "w") as f:
            f.write(markdown(rows, problems))
    for p in problems:
        print(f"check_registers: OVER BUDGET: {p}", file=sys.stderr)
    print(f"check_registers: {len(rows)} kernels, " +
          (f"{len(problems)} over budget" if problems else "all within budget"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
