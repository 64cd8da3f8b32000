#!/usr/bin/env nextflow
/*
 * {{ cookiecutter.project_name }}: train and evaluate {{ cookiecutter.family }} models with insectml.
 *
 *   nextflow run train_evaluate.nf [-profile test|slurm|gpu] [--outdir results]
 *   nextflow run train_evaluate.nf --help
 *
 * workflows/, subworkflows/, modules/ and conf/ come from the insectml library and are
 * recorded in modules.json (`insectml modules check`, `insectml modules update`). This file
 * validates the params (subworkflows/local/utils_insectml_pipeline, against
 * nextflow_schema.json) and calls the workflow.
 */
nextflow.enable.dsl = 2

{%- set wf = cookiecutter.family.upper() %}

include { validateParams; sweepPlan; familyInput; PIPELINE_COMPLETION } from './subworkflows/local/utils_insectml_pipeline/main'
include { {{ wf }} } from './workflows/{{ cookiecutter.family }}'

workflow {
    validateParams()
{%- if cookiecutter.family == 'wingbeat' %}
    WINGBEAT ( familyInput('wingbeat'), params.wingbeat_models.tokenize(',')*.trim(), sweepPlan([ 'wingbeat' ]), params.chunk_size, params.cv_folds )
{%- elif cookiecutter.family == 'detector' %}
    DETECTOR ( familyInput('detector'), params.chunk_size )
{%- else %}
    FEWSHOT ( familyInput('fewshot'), sweepPlan([ 'fewshot' ]), params.chunk_size, params.cv_folds )
{%- endif %}
    PIPELINE_COMPLETION ( {{ wf }}.out.versions )
}
