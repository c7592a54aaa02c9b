from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0002_order_paid_minor')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Order',
            name='checkout_lease_until',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='Order',
            name='recheck_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='Order',
            name='recheck_failures',
            field=fields.IntField(default=0),
        ),
    ]
