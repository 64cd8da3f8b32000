/*
 * A sweep's selection, shared by the families that sweep (wingbeat, fewshot): the models
 * of every configuration → SWEEP_SELECT (table, plot, best id by the family's validation
 * metric) → only the best configuration's model goes on.
 */
include { SWEEP_SELECT } from '../../../modules/sweep/select/main'

workflow SWEEP_BEST {
    take:
    ch_model    // [ meta (meta.config: the configuration id), model ], one per configuration
    sweep       // the plan of 'insectml sweep plan': [ task, metric, configs, … ]

    main:
    ch_plan = Channel.of(groovy.json.JsonOutput.toJson(sweep)).collectFile(name: 'sweep_plan.json').first()
    SWEEP_SELECT ( ch_model
        .map { meta, model -> [ [ id: meta.id, family: meta.family ], meta.config, model ] }
        .groupTuple()
        .combine(ch_plan) )

    ch_best = ch_model
        .combine(SWEEP_SELECT.out.best.map { meta, best -> best.text.trim() })
        .filter { meta, model, best -> meta.config == best }
        .map { meta, model, best -> [ meta, model ] }

    emit:
    model    = ch_best                                          // [ meta, model ] of the best configuration
    sweep    = SWEEP_SELECT.out.sweep.map { meta, dir -> dir }  // the sweep folder (table, plot, best.txt)
    versions = SWEEP_SELECT.out.versions
}
