"""The invalid-workflow corpus: each case is a whole file and every error it must produce.

Expected errors are written ``LINE:COL: node path: message`` (the file name is
added by the test). Keys are case ids; texts are KDL exactly as a user might write it.
"""

INVALID: dict[str, tuple[str, list[str]]] = {
    'empty-file': (
        '',
        [
            '1:1: no "workflow" node: the file must contain one workflow { ... } node',
        ],
    ),
    'only-comments': (
        '// nothing here\n',
        [
            '1:1: no "workflow" node: the file must contain one workflow { ... } node',
        ],
    ),
    'unknown-top-level': (
        'pipeline {\n}\nworkflow {\n  job id="a" runs_on="b" {\n    step run="x"\n  }\n}\n',
        [
            '1:1: unknown top-level node "pipeline" (expected "workflow")',
        ],
    ),
    'two-workflows': (
        'workflow {\n  job id="a" runs_on="b" { step run="x"; }\n}\nworkflow {\n}\n',
        [
            '4:1: workflow: only one "workflow" node is allowed (first at 1:1)',
        ],
    ),
    'workflow-argument': (
        'workflow "ci" {\n  job id="a" runs_on="b" { step run="x"; }\n}\n',
        [
            '1:10: workflow: unexpected argument "ci" (workflow takes no arguments)',
        ],
    ),
    'workflow-unknown-prop': (
        'workflow title="ci" {\n  job id="a" runs_on="b" { step run="x"; }\n}\n',
        [
            '1:10: workflow: unknown property "title" (allowed: name)',
        ],
    ),
    'workflow-name-number': (
        'workflow name=3 {\n  job id="a" runs_on="b" { step run="x"; }\n}\n',
        [
            '1:15: workflow: property "name" must be a string, not a number',
        ],
    ),
    'workflow-name-empty': (
        'workflow name="" {\n  job id="a" runs_on="b" { step run="x"; }\n}\n',
        [
            '1:10: workflow: property "name" must be a non-empty single line',
        ],
    ),
    'no-jobs': (
        'workflow name="ci" {\n}\n',
        [
            '1:1: workflow: workflow has no jobs: add at least one job',
        ],
    ),
    'unknown-workflow-child': (
        'workflow {\n  jobs id="a"\n  job id="a" runs_on="b" { step run="x"; }\n}\n',
        [
            '2:3: workflow: unknown node "jobs" (allowed here: env, job, on)',
        ],
    ),
    'job-missing-id': (
        'workflow {\n  job runs_on="b" {\n    step run="x"\n  }\n}\n',
        [
            '2:3: job #1: job is missing required property "id"',
        ],
    ),
    'job-missing-runs-on': (
        'workflow {\n  job id="a" {\n    step run="x"\n  }\n}\n',
        [
            '2:3: job "a": job is missing required property "runs_on"',
        ],
    ),
    'job-id-uppercase': (
        'workflow {\n  job id="Build" runs_on="b" {\n    step run="x"\n  }\n}\n',
        [
            '2:7: job "Build": invalid job id "Build": use 1-63 characters of a-z, 0-9, \'.\', \'_\' and \'-\', starting with a letter or digit',
        ],
    ),
    'job-id-too-long': (
        'workflow {\n  job id="aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" runs_on="b" {\n    step run="x"\n  }\n}\n',
        [
            '2:7: job "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa": invalid job id "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa": use 1-63 characters of a-z, 0-9, \'.\', \'_\' and \'-\', starting with a letter or digit',
        ],
    ),
    'job-id-number': (
        'workflow {\n  job id=7 runs_on="b" {\n    step run="x"\n  }\n}\n',
        [
            '2:10: job #1: property "id" must be a string, not a number',
        ],
    ),
    'runs-on-invalid': (
        'workflow {\n  job id="a" runs_on="ubuntu 22.04" {\n    step run="x"\n  }\n}\n',
        [
            '2:14: job "a": invalid runs_on label "ubuntu 22.04": use 1-63 characters of a-z, 0-9, \'.\', \'_\' and \'-\', starting with a letter or digit',
        ],
    ),
    'job-argument': (
        'workflow {\n  job "a" id="a" runs_on="b" {\n    step run="x"\n  }\n}\n',
        [
            '2:7: job "a": unexpected argument "a" (job takes no arguments)',
        ],
    ),
    'job-unknown-prop': (
        'workflow {\n  job id="a" runs_on="b" image="x" {\n    step run="x"\n  }\n}\n',
        [
            '2:26: job "a": unknown property "image" (allowed: id, name, runs_on, timeout, required)',
        ],
    ),
    'empty-job': (
        'workflow {\n  job id="a" runs_on="b"\n}\n',
        [
            '2:3: job "a": job has no steps: add at least one step',
        ],
    ),
    'duplicate-job-id': (
        'workflow {\n  job id="a" runs_on="b" { step run="x"; }\n  job id="a" runs_on="c" { step run="y"; }\n}\n',
        [
            '3:7: job "a": duplicate job id "a" (first defined at 2:3)',
        ],
    ),
    'job-bad-timeout': (
        'workflow {\n  job id="a" runs_on="b" timeout="90" {\n    step run="x"\n  }\n}\n',
        [
            '2:26: job "a": invalid timeout "90": expected a number with a unit, like 90s, 30m, 2h or 1h30m',
        ],
    ),
    'job-timeout-number': (
        'workflow {\n  job id="a" runs_on="b" timeout=90 {\n    step run="x"\n  }\n}\n',
        [
            '2:34: job "a": property "timeout" must be a string, not a number',
        ],
    ),
    'unknown-job-child': (
        'workflow {\n  job id="a" runs_on="b" {\n    stepp run="x"\n    step run="x"\n  }\n}\n',
        [
            '3:5: job "a": unknown node "stepp" (allowed here: artifact, cache, env, matrix, needs, report, secret, step)',
        ],
    ),
    'step-without-run': (
        'workflow {\n  job id="a" runs_on="b" {\n    step run="x"\n    step name="Test"\n  }\n}\n',
        [
            '4:5: job "a" > step #2: step has no "run": add run="..." or a run child node',
        ],
    ),
    'step-run-empty': (
        'workflow {\n  job id="a" runs_on="b" {\n    step run="  "\n  }\n}\n',
        [
            '3:10: job "a" > step #1: run script is empty',
        ],
    ),
    'step-run-twice': (
        'workflow {\n  job id="a" runs_on="b" {\n    step run="x" {\n      run "y"\n    }\n  }\n}\n',
        [
            '4:7: job "a" > step #1: run is given twice (first at 3:10)',
        ],
    ),
    'step-run-node-two-args': (
        'workflow {\n  job id="a" runs_on="b" {\n    step {\n      run "x" "y"\n    }\n  }\n}\n',
        [
            '4:15: job "a" > step #1 > run: run takes exactly one string argument',
        ],
    ),
    'step-run-node-number': (
        'workflow {\n  job id="a" runs_on="b" {\n    step {\n      run 42\n    }\n  }\n}\n',
        [
            '4:11: job "a" > step #1 > run: run script must be a string, not a number',
        ],
    ),
    'step-unknown-prop': (
        'workflow {\n  job id="a" runs_on="b" {\n    step run="x" shell="bash"\n  }\n}\n',
        [
            '3:18: job "a" > step #1: unknown property "shell" (allowed: name, run, timeout, workdir, continue_on_error)',
        ],
    ),
    'step-argument': (
        'workflow {\n  job id="a" runs_on="b" {\n    step "Build" run="x"\n  }\n}\n',
        [
            '3:10: job "a" > step #1: unexpected argument "Build" (step takes no arguments)',
        ],
    ),
    'step-continue-string': (
        'workflow {\n  job id="a" runs_on="b" {\n    step run="x" continue_on_error="yes"\n  }\n}\n',
        [
            '3:36: job "a" > step #1: property "continue_on_error" must be a boolean (true or false), not a string',
        ],
    ),
    'job-required-string': (
        'workflow {\n  job id="a" runs_on="b" required="no" {\n    step run="x"\n  }\n}\n',
        [
            '2:35: job "a": property "required" must be a boolean (true or false), not a string',
        ],
    ),
    'step-bad-timeout': (
        'workflow {\n  job id="a" runs_on="b" {\n    step run="x" timeout="0s"\n  }\n}\n',
        [
            '3:18: job "a" > step #1: invalid timeout "0s": must be greater than zero',
        ],
    ),
    'step-workdir-absolute': (
        'workflow {\n  job id="a" runs_on="b" {\n    step run="x" workdir="/tmp"\n  }\n}\n',
        [
            '3:18: job "a" > step #1: workdir "/tmp" must be relative to the checkout, not absolute',
        ],
    ),
    'step-workdir-dotdot': (
        'workflow {\n  job id="a" runs_on="b" {\n    step run="x" workdir="src/../../etc"\n  }\n}\n',
        [
            '3:18: job "a" > step #1: workdir "src/../../etc" must stay inside the checkout (\'..\' is not allowed)',
        ],
    ),
    'step-unknown-child': (
        'workflow {\n  job id="a" runs_on="b" {\n    step run="x" {\n      with "y"\n    }\n  }\n}\n',
        [
            '4:7: job "a" > step #1: unknown node "with" (allowed here: env, run)',
        ],
    ),
    'step-name-multiline': (
        'workflow {\n  job id="a" runs_on="b" {\n    step name="a\\nb" run="x"\n  }\n}\n',
        [
            '3:10: job "a" > step #1: property "name" must be a non-empty single line',
        ],
    ),
    'env-bad-name': (
        'workflow {\n  env "1PATH"="x" PATH="/bin"\n  job id="a" runs_on="b" { step run="x"; }\n}\n',
        [
            '2:7: workflow > env: invalid env name "1PATH": use letters, digits and \'_\', not starting with a digit',
        ],
    ),
    'env-key-escaped': (
        'workflow {\n  env "A\\u{2d}B"="x"\n  job id="a" runs_on="b" { step run="x"; }\n}\n',
        [
            '2:18: workflow > env: invalid env name "A-B": use letters, digits and \'_\', not starting with a digit',
        ],
    ),
    'env-number-value': (
        'workflow {\n  job id="a" runs_on="b" {\n    env RETRIES=3\n    step run="x"\n  }\n}\n',
        [
            '3:17: job "a" > env: env "RETRIES" must be a string, not a number',
        ],
    ),
    'env-set-twice': (
        'workflow {\n  job id="a" runs_on="b" {\n    env A="1"\n    env A="2"\n    step run="x"\n  }\n}\n',
        [
            '4:9: job "a" > env: env "A" is set twice (first at 3:9)',
        ],
    ),
    'env-empty': (
        'workflow {\n  job id="a" runs_on="b" {\n    step run="x" {\n      env\n    }\n  }\n}\n',
        [
            '4:7: job "a" > step #1 > env: env sets no variables: write env NAME="value"',
        ],
    ),
    'env-argument': (
        'workflow {\n  env "A" "1"\n  job id="a" runs_on="b" { step run="x"; }\n}\n',
        [
            '2:7: workflow > env: unexpected argument "A" (env takes no arguments)',
            '2:11: workflow > env: unexpected argument "1" (env takes no arguments)',
        ],
    ),
    'env-children': (
        'workflow {\n  env {\n    A "1"\n  }\n  job id="a" runs_on="b" { step run="x"; }\n}\n',
        [
            '3:5: workflow > env: unexpected child node "A" (env takes no children)',
        ],
    ),
    'needs-unknown': (
        'workflow {\n  job id="a" runs_on="b" {\n    needs "bulid"\n    step run="x"\n  }\n}\n',
        [
            '3:11: job "a" > needs: needs unknown job "bulid"',
        ],
    ),
    'needs-self': (
        'workflow {\n  job id="a" runs_on="b" {\n    needs "a"\n    step run="x"\n  }\n}\n',
        [
            '3:11: job "a" > needs: a job cannot need itself',
        ],
    ),
    'needs-cycle': (
        'workflow {\n  job id="a" runs_on="b" {\n    needs "c"\n    step run="x"\n  }\n  job id="b" runs_on="b" {\n    needs "a"\n    step run="x"\n  }\n  job id="c" runs_on="b" {\n    needs "b"\n    step run="x"\n  }\n}\n',
        [
            '3:11: job "a" > needs: needs cycle: a -> c -> b -> a',
        ],
    ),
    'needs-empty': (
        'workflow {\n  job id="a" runs_on="b" {\n    needs\n    step run="x"\n  }\n}\n',
        [
            '3:5: job "a" > needs: needs lists nothing: give one or more names',
        ],
    ),
    'needs-twice': (
        'workflow {\n  job id="a" runs_on="b" { step run="x"; }\n  job id="c" runs_on="b" {\n    needs "a" "a"\n    step run="x"\n  }\n}\n',
        [
            '4:15: job "c" > needs: "a" is listed twice (first at 4:11)',
        ],
    ),
    'needs-property': (
        'workflow {\n  job id="a" runs_on="b" { step run="x"; }\n  job id="c" runs_on="b" {\n    needs job="a"\n    step run="x"\n  }\n}\n',
        [
            '4:11: job "c" > needs: unknown property "job" (needs takes names as arguments)',
        ],
    ),
    'secret-bad-name': (
        'workflow {\n  job id="a" runs_on="b" {\n    secret "npm-token"\n    step run="x"\n  }\n}\n',
        [
            '3:12: job "a" > secret: invalid secret name "npm-token": use letters, digits and \'_\', not starting with a digit',
        ],
    ),
    'secret-number': (
        'workflow {\n  job id="a" runs_on="b" {\n    secret 12\n    step run="x"\n  }\n}\n',
        [
            '3:12: job "a" > secret: argument 12 must be a string, not a number',
        ],
    ),
    'secret-with-value': (
        'workflow {\n  job id="a" runs_on="b" {\n    secret TOKEN="hunter2"\n    step run="x"\n  }\n}\n',
        [
            '3:12: job "a" > secret: unknown property "TOKEN" (secret takes names as arguments)',
        ],
    ),
    'tagged-node': (
        'workflow {\n  (linux)job id="a" runs_on="b" {\n    step run="x"\n  }\n}\n',
        [
            '2:3: job "a": type annotations such as (linux) are not supported',
        ],
    ),
    'tagged-value': (
        'workflow {\n  job id="a" runs_on=(os)"b" {\n    step run="x"\n  }\n}\n',
        [
            '2:26: job "a": property "runs_on" has a type annotation (os); annotations are not supported',
        ],
    ),
    'syntax-unclosed-string': (
        'workflow {\n  job id="a runs_on="b" {\n',
        [
            '2:22: KDL syntax error: Junk after node, before terminator.',
        ],
    ),
    'syntax-missing-value': (
        'workflow {\n  job id= runs_on="b" {\n    step run="x"\n  }\n}\n',
        [
            '2:10: KDL syntax error: Expected value after prop=.',
        ],
    ),
    'syntax-unclosed-children': (
        'workflow {\n  job id="a" runs_on="b" {\n    step run="x"\n',
        [
            '2:26: KDL syntax error: Hit EOF while searching for end of child list',
        ],
    ),
    'syntax-single-quotes': (
        'workflow {\n  job id=\'a\' runs_on="b" {\n    step run="x"\n  }\n}\n',
        [
            '2:10: KDL syntax error: KDL strings use double-quotes.',
        ],
    ),
    'run-node-no-argument': (
        'workflow {\n  job id="a" runs_on="b" {\n    step {\n      run\n    }\n  }\n}\n',
        [
            '4:7: job "a" > step #1 > run: run takes exactly one string argument',
        ],
    ),
    'run-node-property': (
        'workflow {\n  job id="a" runs_on="b" {\n    step {\n      run "x" shell="sh"\n    }\n  }\n}\n',
        [
            '4:15: job "a" > step #1 > run: unknown property "shell" (run takes one string argument)',
        ],
    ),
    'run-node-children': (
        'workflow {\n  job id="a" runs_on="b" {\n    step {\n      run "x" {\n        line "y"\n      }\n    }\n  }\n}\n',
        [
            '5:9: job "a" > step #1 > run: unexpected child node "line" (run takes no children)',
        ],
    ),
    'run-node-tagged-value': (
        'workflow {\n  job id="a" runs_on="b" {\n    step {\n      run (sh)"x"\n    }\n  }\n}\n',
        [
            '4:15: job "a" > step #1 > run: run script has a type annotation (sh); annotations are not supported',
        ],
    ),
    'step-run-boolean': (
        'workflow {\n  job id="a" runs_on="b" {\n    step run=true\n  }\n}\n',
        [
            '3:14: job "a" > step #1: property "run" must be a string, not a boolean',
        ],
    ),
    'step-name-null': (
        'workflow {\n  job id="a" runs_on="b" {\n    step name=null run="x"\n  }\n}\n',
        [
            '3:15: job "a" > step #1: property "name" must be a string, not null',
        ],
    ),
    'step-workdir-empty': (
        'workflow {\n  job id="a" runs_on="b" {\n    step run="x" workdir=""\n  }\n}\n',
        [
            '3:18: job "a" > step #1: workdir "" must not be empty',
        ],
    ),
    'step-workdir-newline': (
        'workflow {\n  job id="a" runs_on="b" {\n    step run="x" workdir="a\\nb"\n  }\n}\n',
        [
            '3:18: job "a" > step #1: workdir "a\\nb" must not contain NUL or newline characters',
        ],
    ),
    'step-timeout-units': (
        'workflow {\n  job id="a" runs_on="b" {\n    step run="x" timeout="5 minutes"\n  }\n}\n',
        [
            '3:18: job "a" > step #1: invalid timeout "5 minutes": expected a number with a unit, like 90s, 30m, 2h or 1h30m',
        ],
    ),
    'env-tagged-value': (
        'workflow {\n  env A=(path)"/bin"\n  job id="a" runs_on="b" { step run="x"; }\n}\n',
        [
            '2:15: workflow > env: env "A" has a type annotation (path); annotations are not supported',
        ],
    ),
    'env-boolean-value': (
        'workflow {\n  job id="a" runs_on="b" {\n    step run="x" {\n      env DEBUG=true\n    }\n  }\n}\n',
        [
            '4:17: job "a" > step #1 > env: env "DEBUG" must be a string, not a boolean',
        ],
    ),
    'secret-twice': (
        'workflow {\n  job id="a" runs_on="b" {\n    secret "TOKEN"\n    secret "KEY" "TOKEN"\n    step run="x"\n  }\n}\n',
        [
            '4:18: job "a" > secret: "TOKEN" is listed twice (first at 3:12)',
        ],
    ),
    'secret-empty': (
        'workflow {\n  job id="a" runs_on="b" {\n    secret\n    step run="x"\n  }\n}\n',
        [
            '3:5: job "a" > secret: secret lists nothing: give one or more names',
        ],
    ),
    'needs-two-cycles': (
        'workflow {\n  job id="a" runs_on="b" {\n    needs "b"\n    step run="x"\n  }\n  job id="b" runs_on="b" {\n    needs "a"\n    step run="x"\n  }\n  job id="c" runs_on="b" {\n    needs "d"\n    step run="x"\n  }\n  job id="d" runs_on="b" {\n    needs "c"\n    step run="x"\n  }\n}\n',
        [
            '3:11: job "a" > needs: needs cycle: a -> b -> a',
            '11:11: job "c" > needs: needs cycle: c -> d -> c',
        ],
    ),
    'needs-behind-cycle': (
        'workflow {\n  job id="a" runs_on="b" {\n    needs "b"\n    step run="x"\n  }\n  job id="b" runs_on="b" {\n    needs "a"\n    step run="x"\n  }\n  job id="c" runs_on="b" {\n    needs "a"\n    step run="x"\n  }\n}\n',
        [
            '3:11: job "a" > needs: needs cycle: a -> b -> a',
        ],
    ),
    'only-unknown-top-level': (
        'pipeline {\n  job id="a" runs_on="b" { step run="x"; }\n}\n',
        [
            '1:1: unknown top-level node "pipeline" (expected "workflow")',
        ],
    ),
    'job-id-empty': (
        'workflow {\n  job id="" runs_on="b" {\n    step run="x"\n  }\n}\n',
        [
            '2:7: job #1: invalid job id "": use 1-63 characters of a-z, 0-9, \'.\', \'_\' and \'-\', starting with a letter or digit',
        ],
    ),
    'runs-on-missing-and-no-steps': (
        'workflow {\n  job id="a"\n}\n',
        [
            '2:3: job "a": job is missing required property "runs_on"',
            '2:3: job "a": job has no steps: add at least one step',
        ],
    ),
    'workflow-tagged': (
        '(ci)workflow {\n  job id="a" runs_on="b" { step run="x"; }\n}\n',
        [
            '1:1: workflow: type annotations such as (ci) are not supported',
        ],
    ),
    'syntax-unclosed-raw-string': (
        'workflow {\n  job id="a" runs_on="b" {\n    step {\n      run r#"\n        echo hi\n      "\n    }\n  }\n}\n',
        [
            '4:11: KDL syntax error: Hit EOF while looking for the end of the raw string.',
        ],
    ),
    'secret-also-env': (
        'workflow {\n  env TOKEN="x"\n  job id="a" runs_on="b" {\n    secret "KEY" "TOKEN"\n    env KEY="1"\n    step run="x" {\n      env KEY="2"\n    }\n  }\n}\n',
        [
            '4:12: job "a" > secret: secret "KEY" is also set as a variable by job env, step #1 env: a secret and an env variable cannot share a name',
            '4:18: job "a" > secret: secret "TOKEN" is also set as a variable by workflow env: a secret and an env variable cannot share a name',
        ],
    ),
}

# -- matrices (common/workflow/matrix.py) --
INVALID.update({
    'matrix-axis-dup': (
        'workflow {\n  job id="t" runs_on="x" {\n    matrix {\n      os "a" "b"\n      os "c"\n    }\n    step run="x"\n  }\n}\n',
        [
            '5:7: job "t" > matrix: axis "os" is given twice (first at 4:7)',
        ],
    ),
    'matrix-value-dup': (
        'workflow {\n  job id="t" runs_on="x" {\n    matrix { os "a" "a"; }\n    step run="x"\n  }\n}\n',
        [
            '3:21: job "t" > matrix > os: "a" is listed twice (first at 3:17)',
        ],
    ),
    'matrix-no-axes': (
        'workflow {\n  job id="t" runs_on="x" {\n    matrix\n    step run="x"\n  }\n}\n',
        [
            '3:5: job "t" > matrix: matrix has no axes: add one such as os "a" "b"',
        ],
    ),
    'matrix-exclude-unknown-axis': (
        'workflow {\n  job id="t" runs_on="x" {\n    matrix {\n      os "a" "b"\n      exclude arch="b"\n    }\n    step run="x"\n  }\n}\n',
        [
            '5:15: job "t" > matrix > exclude: unknown matrix axis "arch" (axes: os)',
        ],
    ),
    'matrix-exclude-unknown-value': (
        'workflow {\n  job id="t" runs_on="x" {\n    matrix {\n      os "a" "b"\n      exclude os="c"\n    }\n    step run="x"\n  }\n}\n',
        [
            '5:18: job "t" > matrix > exclude: "c" is not a value of axis "os" ("a", "b")',
        ],
    ),
    'matrix-exclude-all': (
        'workflow {\n  job id="t" runs_on="x" {\n    matrix {\n      os "a"\n      exclude os="a"\n    }\n    step run="x"\n  }\n}\n',
        [
            '3:5: job "t" > matrix: exclude removes every combination: nothing would run',
        ],
    ),
    'matrix-include-missing-axis': (
        'workflow {\n  job id="t" runs_on="x" {\n    matrix {\n      os "a"\n      py "1"\n      include os="b"\n    }\n    step run="x"\n  }\n}\n',
        [
            '6:7: job "t" > matrix > include: include must give a value for every axis: missing py',
        ],
    ),
    'matrix-include-existing': (
        'workflow {\n  job id="t" runs_on="x" {\n    matrix {\n      os "a"\n      include os="a"\n    }\n    step run="x"\n  }\n}\n',
        [
            '5:7: job "t" > matrix > include: os="a" is already in the matrix',
        ],
    ),
    'matrix-ref-unknown-axis': (
        'workflow {\n  job id="t" runs_on="x" {\n    matrix { os "a"; }\n    step run="echo ${{ matrix.python }}"\n  }\n}\n',
        [
            '4:14: job "t" > step #1: unknown matrix axis "python" in ${{ matrix.python }} (axes: os)',
        ],
    ),
    'matrix-ref-no-matrix': (
        'workflow {\n  job id="t" runs_on="x" {\n    step run="echo ${{ matrix.os }}"\n  }\n}\n',
        [
            '3:14: job "t" > step #1: ${{ matrix.os }} is used but the job has no matrix',
        ],
    ),
    'matrix-ref-in-id': (
        'workflow {\n  job id="t" runs_on="x" timeout="${{ matrix.os }}" {\n    matrix { os "a"; }\n    step run="x"\n  }\n}\n',
        [
            '2:26: job "t": invalid timeout "${{ matrix.os }}": expected a number with a unit, like 90s, 30m, 2h or 1h30m',
            '2:34: job "t": matrix values cannot be used here (only in runs_on, name, env values and steps\' name, run and env values)',
        ],
    ),
    'matrix-runs-on-bad-value': (
        'workflow {\n  job id="t" runs_on="${{ matrix.os }}" {\n    matrix { os "Illumos Stable"; }\n    step run="x"\n  }\n}\n',
        [
            '2:14: job "t": runs_on becomes "Illumos Stable" for os="Illumos Stable", not a label: use 1-63 characters of a-z, 0-9, \'.\', \'_\' and \'-\', starting with a letter or digit',
        ],
    ),
    'matrix-two-matrices': (
        'workflow {\n  job id="t" runs_on="x" {\n    matrix { os "a"; }\n    matrix { os "b"; }\n    step run="x"\n  }\n}\n',
        [
            '4:5: job "t" > matrix: a job has one matrix (first at 3:5)',
        ],
    ),
    'matrix-axis-value-number': (
        'workflow {\n  job id="t" runs_on="x" {\n    matrix { py 3.11; }\n    step run="x"\n  }\n}\n',
        [
            '3:17: job "t" > matrix > py: argument 3.11 must be a string, not a number',
        ],
    ),
    'matrix-axis-name-bad': (
        'workflow {\n  job id="t" runs_on="x" {\n    matrix { "os-name" "a"; }\n    step run="x"\n  }\n}\n',
        [
            '3:14: job "t" > matrix: invalid matrix axis name "os-name": use 1-32 letters, digits and \'_\', not starting with a digit',
        ],
    ),
    'matrix-too-many': (
        'workflow {\n  job id="t" runs_on="x" {\n    matrix {\n      a "0" "1" "2" "3" "4" "5" "6" "7" "8" "9" "10" "11" "12" "13" "14" "15" "16" "17" "18" "19"\n      b "0" "1" "2" "3" "4" "5" "6" "7" "8" "9" "10" "11" "12" "13" "14" "15" "16" "17" "18" "19"\n    }\n    step run="x"\n  }\n}\n',
        [
            '3:5: job "t" > matrix: matrix has 400 combinations; the limit is 256 (workflow_limits.max_jobs)',
        ],
    ),
    'matrix-matrix-prop': (
        'workflow {\n  job id="t" runs_on="x" {\n    matrix fail_fast=true { os "a"; }\n    step run="x"\n  }\n}\n',
        [
            '3:12: job "t" > matrix: unknown property "fail_fast" (matrix takes axes as child nodes)',
        ],
    ),
})

# -- report nodes (common/workflow/reports.py) --
INVALID.update({
    'report-no-junit': (
        'workflow {\n  job id="t" runs_on="x" {\n    report\n    step run="x"\n  }\n}\n',
        [
            '3:5: job "t" > report: report needs a junit="PATTERN" property (JUnit XML files to read)',
        ],
    ),
    'report-unknown-prop': (
        'workflow {\n  job id="t" runs_on="x" {\n    report xunit="a.xml"\n    step run="x"\n  }\n}\n',
        [
            '3:5: job "t" > report: report needs a junit="PATTERN" property (JUnit XML files to read)',
            '3:12: job "t" > report: unknown property "xunit" (allowed: junit)',
        ],
    ),
    'report-absolute': (
        'workflow {\n  job id="t" runs_on="x" {\n    report junit="/tmp/*.xml"\n    step run="x"\n  }\n}\n',
        [
            '3:12: job "t" > report: junit pattern "/tmp/*.xml" must be relative to the checkout, not absolute',
        ],
    ),
    'report-dotdot': (
        'workflow {\n  job id="t" runs_on="x" {\n    report junit="../results/*.xml"\n    step run="x"\n  }\n}\n',
        [
            '3:12: job "t" > report: junit pattern "../results/*.xml" must stay inside the checkout (\'..\' is not allowed)',
        ],
    ),
    'report-number': (
        'workflow {\n  job id="t" runs_on="x" {\n    report junit=1\n    step run="x"\n  }\n}\n',
        [
            '3:18: job "t" > report: property "junit" must be a string, not a number',
        ],
    ),
    'report-argument': (
        'workflow {\n  job id="t" runs_on="x" {\n    report "a.xml"\n    step run="x"\n  }\n}\n',
        [
            '3:5: job "t" > report: report needs a junit="PATTERN" property (JUnit XML files to read)',
            '3:12: job "t" > report: unexpected argument "a.xml" (report takes no arguments)',
        ],
    ),
    'report-children': (
        'workflow {\n  job id="t" runs_on="x" {\n    report junit="a.xml" {\n      path "b"\n    }\n    step run="x"\n  }\n}\n',
        [
            '4:7: job "t" > report: unexpected child node "path" (report takes no children)',
        ],
    ),
    'report-too-many': (
        'workflow {\n  job id="t" runs_on="x" {\n    report junit="r0.xml"\n    report junit="r1.xml"\n    report junit="r2.xml"\n    report junit="r3.xml"\n    report junit="r4.xml"\n    report junit="r5.xml"\n    report junit="r6.xml"\n    report junit="r7.xml"\n    report junit="r8.xml"\n    report junit="r9.xml"\n    report junit="r10.xml"\n    report junit="r11.xml"\n    report junit="r12.xml"\n    report junit="r13.xml"\n    report junit="r14.xml"\n    report junit="r15.xml"\n    report junit="r16.xml"\n    step run="x"\n  }\n}\n',
        [
            '19:5: job "t" > report: a job has at most 16 report nodes',
        ],
    ),
})

# -- on (schedules; common/workflow/schedules.py) --
INVALID.update({
    'on-missing-branch': (
        'workflow {\n  on schedule="0 3 * * *"\n  job id="a" runs_on="b" { step run="x"; }\n}\n',
        [
            '2:3: workflow > on: on is missing required property "branch" (on schedule="0 3 * * *" branch="main")',
        ],
    ),
    'on-missing-schedule': (
        'workflow {\n  on branch="main"\n  job id="a" runs_on="b" { step run="x"; }\n}\n',
        [
            '2:3: workflow > on: on is missing required property "schedule" (on schedule="0 3 * * *" branch="main")',
        ],
    ),
    'on-bad-cron': (
        'workflow {\n  on schedule="0 25 * * *" branch="main"\n  job id="a" runs_on="b" { step run="x"; }\n}\n',
        [
            '2:6: workflow > on: invalid schedule "0 25 * * *": hour 25 is out of range 0-23',
        ],
    ),
    'on-four-fields': (
        'workflow {\n  on schedule="0 3 * *" branch="main"\n  job id="a" runs_on="b" { step run="x"; }\n}\n',
        [
            '2:6: workflow > on: invalid schedule "0 3 * *": has 4 fields; cron takes 5: minute hour day-of-month month day-of-week',
        ],
    ),
    'on-never': (
        'workflow {\n  on schedule="0 0 30 2 *" branch="main"\n  job id="a" runs_on="b" { step run="x"; }\n}\n',
        [
            '2:6: workflow > on: invalid schedule "0 0 30 2 *": never fires (no month has such a day)',
        ],
    ),
    'on-bad-branch': (
        'workflow {\n  on schedule="@daily" branch="-x"\n  job id="a" runs_on="b" { step run="x"; }\n}\n',
        [
            '2:24: workflow > on: invalid branch "-x": use 1-200 characters of letters, digits, \'.\', \'_\', \'/\' and \'-\', not starting with \'.\', \'/\' or \'-\'',
        ],
    ),
    'on-dotdot-branch': (
        'workflow {\n  on schedule="@daily" branch="a..b"\n  job id="a" runs_on="b" { step run="x"; }\n}\n',
        [
            '2:24: workflow > on: invalid branch "a..b": is not a valid git branch name (\'..\', \'//\', \'/.\', or a trailing \'/\', \'.\' or \'.lock\')',
        ],
    ),
    'on-unknown-prop': (
        'workflow {\n  on schedule="@daily" branch="main" push=true\n  job id="a" runs_on="b" { step run="x"; }\n}\n',
        [
            '2:38: workflow > on: unknown property "push" (allowed: schedule, branch)',
        ],
    ),
    'on-twice': (
        'workflow {\n  on schedule="@daily" branch="main"\n  on schedule="@daily" branch="main"\n  job id="a" runs_on="b" { step run="x"; }\n}\n',
        [
            '3:3: workflow > on: this schedule is given twice',
        ],
    ),
    'on-argument': (
        'workflow {\n  on "nightly" schedule="@daily" branch="main"\n  job id="a" runs_on="b" { step run="x"; }\n}\n',
        [
            '2:6: workflow > on: unexpected argument "nightly" (on takes no arguments)',
        ],
    ),
    'on-step-range': (
        'workflow {\n  on schedule="*/0 * * * *" branch="main"\n  job id="a" runs_on="b" { step run="x"; }\n}\n',
        [
            '2:6: workflow > on: invalid schedule "*/0 * * * *": minute field \'*/0\': step \'0\' must be a positive number',
        ],
    ),
})
