/*
 * Pipeline utilities shared by the library's train_evaluate.nf and every project made
 * from cookiecutter-template/ (part of the 'base' component): the insectml CLI from the
 * head job, params validation and --help, the sweep plan, the input channels of each
 * family, and the run's completion (software_versions.yml, the closing log line).
 * Validation and the sweep plan run in Python before any channel exists.
 */

// `insectml ARGS…` from the head job: [ exit code, stdout, stderr ]. A library checkout
// runs its own bin/insectml; a project runs the insectml installed in its environment.
def insectml(List args) {
    def checkout = file("${projectDir}/bin/insectml")
    def proc = ([ checkout.exists() ? checkout.toString() : 'insectml' ] + args).collect { it.toString() }.execute()
    def out = new StringBuilder(), err = new StringBuilder()
    proc.waitForProcessOutput(out, err)
    return [ proc.exitValue(), out.toString(), err.toString() ]
}

// --help prints every param and exits 0; params that break nextflow_schema.json end the
// run with exit code 2 and one line per problem.
def validateParams(String schema = "${projectDir}/nextflow_schema.json") {
    if (params.help) {
        def (code, out, err) = insectml([ 'params', 'help', '--schema', schema ])
        println(out ?: err)
        exit 0
    }
    def (code, out, err) = insectml([ 'params', 'validate', '--schema', schema, '--params', groovy.json.JsonOutput.toJson(params) ])
    if (code != 0) {
        exit 2, err.trim()
    }
}

// --sweep FILE: the configurations (a map: task, metric, configs, …), checked in Python
// like the params; [:] without a sweep. The swept family must be one of `tasks`.
def sweepPlan(List tasks, String schema = "${projectDir}/nextflow_schema.json") {
    if (!params.sweep) {
        return [:]
    }
    def (code, out, err) = insectml([ 'sweep', 'plan', '--sweep', params.sweep, '--schema', schema, '--params', groovy.json.JsonOutput.toJson(params) ])
    if (code != 0) {
        exit 2, err.trim()
    }
    def sweep = new groovy.json.JsonSlurper().parseText(out)
    if (!(sweep.task in tasks)) {
        exit 2, "${workflow.manifest.name}: error: --sweep: ${params.sweep} sweeps ${sweep.task}, which --task ${params.task} does not run"
    }
    log.info "${workflow.manifest.name}: sweep ${params.sweep}: ${sweep.configs.size()} ${sweep.task} configurations"
    return sweep
}

// The input channel of a family's workflow: one item, [ meta, inputs…, weights, extra labels ]
// (pretrain: [ meta, images, weights ]). Every file a task reads is
// staged (labels CSV, data folder, weights, a labelled active-learning export), so that
// tasks find it from their work dirs and -resume sees it change; [] stands for an unset one.
def familyInput(String family) {
    def meta = [ id: family, family: family, seed: params.seed ]
    def weights = weightsInput("${family}_weights")
    if (family == 'wingbeat') {
        // The folders layout (<species>/<...>/<file>.wav) has no labels CSV.
        def labels = params.wingbeat_layout == 'folders' ? []
            : file(params.wingbeat_labels ?: "${params.wingbeat_input}/labels.csv", checkIfExists: true)
        return Channel.of([ meta, labels, file(params.wingbeat_input, checkIfExists: true), weights, extraLabelsInput(family) ])
    }
    if (family == 'fewshot') {
        // Without a labels CSV the images are read from <class>/<image> folders.
        def labels = params.fewshot_labels ? file(params.fewshot_labels, checkIfExists: true) : []
        return Channel.of([ meta, labels, file(params.fewshot_input, checkIfExists: true), weights, extraLabelsInput(family) ])
    }
    if (family == 'detector') {
        return Channel.of([ meta, file(params.detector_input, checkIfExists: true), weights, extraLabelsInput(family) ])
    }
    return Channel.of([ meta, file(params["${family}_input".toString()], checkIfExists: true), weights ])
}

// --<family>_extra_labels: the labelled Supervisely export of an active-learning round, as
// the validate task's input ([] when unset), a folder relative to the launch folder.
// Nextflow hashes a staged folder by its own path, size and time: a fresh export (downloaded
// and unpacked) is a new folder; one edited in place needs a run without -resume, or
// `touch` of the folder.
def extraLabelsInput(String family) {
    def value = params["${family}_extra_labels".toString()]?.toString()?.trim()
    return value ? file(value, checkIfExists: true, type: 'dir') : []
}

// The file or folder a --<param> weights value names, as a task input ([] when unset): a
// file or folder (relative to the launch folder), or the NAME of weights imported by
// 'insectml weights import', looked up in the folders params validation searches
// (insectml.weights.store): $INSECTML_WEIGHTS_PATH, the launch and the project folders'
// weights/. The tasks get the staged file or folder, never the NAME. Nextflow
// hashes a staged file by its size and time, a folder by its own (which 'weights import
// --force' renews, as it swaps the whole folder).
def weightsInput(String param) {
    def value = params[param]?.toString()?.trim()
    if (!value) {
        return []
    }
    def path = file(value, glob: false)
    if (path.exists()) {
        return path
    }
    def name = !value.contains('/') && !(['.safetensors', '.pt', '.pth', '.bin'].any { value.endsWith(it) })
    if (name) {
        def dirs = (System.getenv('INSECTML_WEIGHTS_PATH') ?: '').tokenize(':') + [ "${launchDir}/weights", "${projectDir}/weights" ]
        def found = dirs.collect { file("${it}/${value}", glob: false) }.find { it.resolve('manifest.json').exists() }
        if (found) {
            return found
        }
    }
    exit 2, "${workflow.manifest.name}: error: --${param}: no weights file, folder or imported NAME '${value}'"
}

workflow PIPELINE_COMPLETION {
    take:
    ch_versions     // versions.yml of every task

    main:
    ch_versions
        .unique()
        .collectFile(name: 'software_versions.yml', storeDir: "${params.outdir}/pipeline_info", sort: true)

    workflow.onComplete {
        completionLog()
    }
}

// In a function `workflow` is the run's metadata (inside a workflow block it is not).
def completionLog() {
    if (workflow.success) {
        log.info "${workflow.manifest.name}: done. Results in ${params.outdir}; run reports in ${params.outdir}/pipeline_info"
    }
}
