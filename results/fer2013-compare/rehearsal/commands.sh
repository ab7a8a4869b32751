# rehearsal with the run worktree's code (f18e428), then main's tables, in /work/rehearsal
set -x
R=/work/rehearsal; rm -rf $R/runs $R/m.db $R/bench $R/out; mkdir -p $R/out
OLD=/work/run-compare/.venv/bin/fer-bench
cd $R
$OLD run --suite suite.yaml --out runs --tracking-uri sqlite:///$R/m.db --device cpu --no-progress; echo "blind rc=$?"
ls runs | head; find runs -name result.json | wc -l
$OLD run --suite suite.yaml --out runs --tracking-uri sqlite:///$R/m.db --device cpu --no-progress --unblind; echo "unblind rc=$?"
find runs -name result.json | wc -l
cd /work/main
FB=.venv/bin/fer-bench
$FB bench --models resnet18,efficientnet_b2 --img-size 48 --batch-size 64 --precision fp32 --repeats 5 --steps 3 --device cpu --no-track --out $R/bench; echo "bench rc=$?"
$FB leaderboard --from-results $R/runs --bench $R/bench --published --columns comparison,tta,cost,provenance --title "rehearsal: 1 epoch on 256 synthetic images" --format md --out $R/out/leaderboard.md --plot $R/out/pareto.png --curves $R/out/curves.png --page $R/out/page.html --screenshot $R/out/page.png; echo "lb rc=$?"
$FB leaderboard --from-results $R/runs --bench $R/bench --format csv --out $R/out/leaderboard.csv; echo "csv rc=$?"
A=$(find $R/runs -path "*insideout*private*" -name result.json -printf '%h\n' | head -1); B=$(find $R/runs -path "*efficientnetv2_s-compare-48*private*" -name result.json -printf '%h\n' | head -1)
$FB compare $A $B --json $R/out/contrast.json | tail -4; echo "compare rc=$?"
