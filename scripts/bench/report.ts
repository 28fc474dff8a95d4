/** The run's machine facts and its markdown rendering. */
import { readFileSync } from "node:fs";
import { loadavg, machine as cpuArch, release, totalmem, type as osType } from "node:os";
import { ROOT, num, type Section, type Table } from "./harness.ts";

function firstLine(cmd: string[]): string | undefined {
  try {
    const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
    return r.exitCode === 0 ? r.stdout.toString().split("\n")[0]?.trim() : undefined;
  } catch {
    return undefined;
  }
}

export function machineInfo() {
  const cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
  const thp = (() => {
    try {
      return /\[(\w+)\]/.exec(readFileSync("/sys/kernel/mm/transparent_hugepage/enabled", "utf8"))?.[1];
    } catch {
      return undefined;
    }
  })();
  const head = firstLine(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]);
  const dirty = Bun.spawnSync(["git", "-C", ROOT, "status", "--porcelain", "--", "src"], { stdout: "pipe", stderr: "ignore" }).stdout.toString().trim() !== "";
  return {
    date: new Date().toISOString(),
    code: head ? `${head}${dirty ? " + uncommitted changes in src/" : ""}` : "unknown (not a git checkout)",
    nproc: Number(firstLine(["nproc"]) ?? navigator.hardwareConcurrency),
    cpu: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? "unknown",
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: `${osType()} ${release()} ${cpuArch()}`,
    bun: `${Bun.version} (${Bun.revision.slice(0, 9)})`,
    cc: Bun.which("cc") ? (firstLine(["cc", "--version"]) ?? "present") : "absent",
    transparentHugepages: thp ?? "unknown",
    loadAverageAtStart: loadavg().map((x) => Math.round(x * 100) / 100),
    loadAverageAtEnd: [] as number[],
  };
}

function markdownTable(t: Table): string {
  const counts = [...new Set(t.rows.map((r) => r.n))].join("/");
  const head = `**${t.title}** (${t.unit}, ${counts} runs each; × = median / median of ${t.reference})\n\n| variant | median | min | max | × |\n|---|--:|--:|--:|--:|`;
  const body = t.rows.map((r) => `| ${r.label} | ${num(r.median, t.unit)} | ${num(r.min, t.unit)} | ${num(r.max, t.unit)} | ${num(r.ratio, "×")} |`);
  return [head, ...body].join("\n");
}

function markdownSection(sec: Section): string {
  const parts = [`### ${sec.title}`, ...(sec.summary ? [sec.summary] : []), ...sec.tables.map((t) => markdownTable(t))];
  if (sec.derived.length) {
    parts.push(
      sec.derived
        .map((d) => {
          const value = d.unit === "×" ? `${num(d.value, "×")}×` : `${num(d.value, d.unit)} ${d.unit}`;
          const target = d.target ? ` (target ${d.target}${d.met === undefined ? "" : d.met ? ": met" : ": **missed**"})` : "";
          return `- ${d.label}: **${value}**${target}`;
        })
        .join("\n"),
    );
  }
  if (sec.notes.length) parts.push(sec.notes.map((n) => `- ${n}`).join("\n"));
  return parts.join("\n\n");
}

export function markdown(report: Report): string {
  const m = report.machine;
  const machine = [
    `- Command: \`${report.command}\``,
    `- Date: ${m.date}; code: ${m.code}`,
    `- Machine: ${m.nproc} × ${m.cpu}, ${m.memoryGiB} GiB RAM, ${m.kernel}, transparent hugepages: ${m.transparentHugepages}`,
    `- Bun ${m.bun}; C compiler: ${m.cc}`,
    `- Load average at start / end: ${m.loadAverageAtStart.join(" ")} / ${m.loadAverageAtEnd.join(" ")}`,
    `- ${report.runs} runs per variant, interleaved (round-robin, rotating start), after one uncounted warm-up round. Medians, min and max; × is the ratio of medians to the table's reference.`,
  ].join("\n");
  return [`## Latest run`, machine, ...report.sections.map((s) => markdownSection(s))].join("\n\n") + "\n";
}

export interface Report {
  command: string;
  /** Rounds per variant, as printed: "30", or "30; sweep: 12" when sections differ. */
  runs: string;
  machine: ReturnType<typeof machineInfo>;
  sections: Section[];
}
