/*
 * SIMULATE: one simulated dataset made by the pipeline itself (the `test` profile's data):
 * a training set and a test set with exact truth, in the channel shapes SAMPLESHEET emits.
 */
include { PIXER_SIMULATE } from './modules/pixer_simulate'

workflow SIMULATE {
    main:
    meta = [id: params.sim_id, diameter: params.sim_diameter, apix: params.sim_apix]
    PIXER_SIMULATE(Channel.of([meta, 'train', params.seed + 1, params.sim_n_train],
                              [meta, 'test', params.seed + 2, params.sim_n_test]))
    sets = PIXER_SIMULATE.out.data.branch { m, role, dir ->
        train: role == 'train'
        test: role == 'test'
    }
    train = sets.train.map { m, role, dir -> [m, dir] }
    test = sets.test.map { m, role, dir -> [m, dir] }

    emit:
    // [meta, train micrographs, particles, map, interference masks]
    training = train.map { m, dir -> [m, dir.resolve('micrographs'), dir.resolve('particles.star'), dir.resolve('map.mrc'), dir.resolve('truth')] }
    // [meta, micrographs to pick]
    picking = test.map { m, dir -> [m, dir.resolve('micrographs')] }
    // [meta, true coordinates of the picked micrographs]
    truth = test.map { m, dir -> [m, dir.resolve('particles.star')] }
}
